"""Fakes for the outermost edges only: Finnhub, Yahoo and Slack servers on 127.0.0.1."""
