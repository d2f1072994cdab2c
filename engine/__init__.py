"""The analyst's library: market data sources, prompts, model, parsing, evaluation, training.

Imports nothing from `bot` or `jobs`. torch, transformers and peft are imported only inside the model,
training and evaluation modules, never at package import.
"""
