"""The Slack Bolt app. Light by design: it never imports torch, transformers or peft."""
