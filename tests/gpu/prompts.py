"""The FinGPT rows and prompts the GPU run uses: the shared test split when it is on the machine (FINGPT_TEST_SPLIT,
or shared/'s copy, as tests/conftest.py finds it), else synthetic FinGPT-shaped ones built with the product's
prompt code.

- `records()`: whole rows (Llama-2 prompt, answer, label), for the training peaks (fitted to 4096 tokens).
- `user_prompts()`: the user messages the product would send (wording fixed to "stock", as engine.data.fingpt_rows
does).
- `serving_tokenizer()`: the tiny test tokenizer, trained on the real prompts' text when there are real prompts
  (in memory only), so a prompt's token count comes out near a real Qwen tokenizer's (~4 characters a token)
  instead of twice that; the synthetic prompts keep the default tokenizer, which learnt their text already.
- `pick_conversations()`: the rows whose rendered prompt is nearest a realistic length (~1.8k tokens), counted
  with the tokenizer as the product loads it (`product_tokenizer`).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

TARGET_PROMPT_TOKENS = 1800  # a FinGPT prompt with a month of news, through the chat template
SERVING_VOCAB = 16000


def _split_folder() -> Path:
    from tests.conftest import DEFAULT_TEST_SPLIT

    return Path(os.environ.get("FINGPT_TEST_SPLIT") or DEFAULT_TEST_SPLIT)


def _split_rows() -> list[dict] | None:
    from tests.conftest import _ARROW_FILE

    path = _split_folder() / _ARROW_FILE
    if not path.is_file():
        return None
    import pyarrow.ipc

    with open(path, "rb") as f:
        return pyarrow.ipc.open_stream(f).read_all().to_pylist()


def _synthetic_parts(symbol: str, i: int, news_per_week: int, wording: str = "stock", weeks: int = 4):
    from engine.data.prompts import NewsLine, PromptParts, WeekBlock
    from engine.records import BasicFinancials, CompanyProfile

    profile = CompanyProfile(ticker=symbol, name=f"{symbol} Synthetic Inc", finnhubIndustry="Synthetic Goods",
                             ipo="1980-01-02", marketCapitalization=1000.0 * (i + 1),
                             shareOutstanding=10.0 * (i + 1), currency="USD", country="US",
                             exchange="NEW YORK STOCK EXCHANGE, INC.")
    start = dt.date(2024, 2, 4)
    blocks = tuple(
        WeekBlock(symbol=symbol, start=str(start + dt.timedelta(days=7 * w)),
                  end=str(start + dt.timedelta(days=7 * w + 7)), start_price=100.0 + w, end_price=99.0 + 2 * w,
                  news=tuple(NewsLine(f"{symbol} reports invented result {w}.{n} on orders and margins",
                                      f"Synthetic summary {w}.{n}: orders, margins, guidance, demand, pricing, "
                                      "supply chain, analyst revisions and competitive moves all shifted this "
                                      "week, according to people familiar with the matter.")
                             for n in range(news_per_week)))
        for w in range(weeks)
    )
    return PromptParts(symbol=symbol, profile=profile, weeks=blocks,
                       financials=BasicFinancials(period="2023-12-31", metrics={"eps": 1.5, "roeTTM": 0.2}),
                       target_start=str(start + dt.timedelta(days=7 * weeks)),
                       target_end=str(start + dt.timedelta(days=7 * weeks + 7)), wording=wording)


def synthetic_records() -> list[dict]:
    """FinGPT-shaped rows (Llama-2 prompt, answer, label) long enough to be fitted to 4096 tokens."""
    from engine.data.prompts import SYSTEM_PROMPT, build_user_prompt, messages_to_llama

    records = []
    for i, symbol in enumerate(["AXP", "KO", "MSFT"]):
        parts = _synthetic_parts(symbol, i, 20, wording="cryptocurrency")
        prompt = messages_to_llama([{"role": "system", "content": SYSTEM_PROMPT},
                                    {"role": "user", "content": build_user_prompt(parts)}])
        answer = ("[Positive Developments]:\n" + "".join(f"{k}. Orders grew in segment {k}, with margins wider and "
                                                         "guidance raised.\n" for k in range(1, 5))
                  + "\n[Potential Concerns]:\n" + "".join(f"{k}. Costs rose in region {k}; demand may slow as "
                                                          "pricing normalises.\n" for k in range(1, 5))
                  + "\n[Prediction & Analysis]:\nPrediction: Up by 1-2%\nAnalysis: "
                  + "Invented reasoning about the coming week, support levels, momentum and sentiment. " * 12)
        records.append({"prompt": prompt, "answer": answer, "period": f"{parts.target_start} to {parts.target_end}",
                        "label": "up by 1-2%", "symbol": symbol})
    return records


def records() -> tuple[list[dict], str]:
    """Rows for the training peaks, and where they came from."""
    rows = _split_rows()
    if rows is not None:
        return rows, "FinGPT test split"
    return synthetic_records(), f"synthetic FinGPT-shaped rows (no test split at {_split_folder()})"


def synthetic_user_prompts() -> list[str]:
    """User messages of many lengths: eight tickers, 1, 2 or 4 weeks of 1 to 20 news each."""
    from engine.data.prompts import build_user_prompt

    symbols = ["AXP", "KO", "MSFT", "AAPL", "JNJ", "CVX", "AMGN", "IBM"]
    return [build_user_prompt(_synthetic_parts(symbol, i, news, weeks=weeks))
            for weeks in (1, 2, 4) for news in (1, 2, 3, 4, 6, 8, 10, 12, 16, 20)
            for i, symbol in enumerate(symbols)]


def user_prompts(*, real: bool = True) -> tuple[list[str], str, bool]:
    """(user messages, where they came from, whether they are real). `real=False` forces the synthetic ones."""
    from engine.data.prompts import fix_wording, llama_to_messages

    rows = _split_rows() if real else None
    if rows is not None:
        return ([fix_wording(llama_to_messages(r["prompt"])[1]["content"]) for r in rows],
                f"FinGPT test split ({_split_folder()})", True)
    why = f"no test split at {_split_folder()}" if real else "synthetic asked for"
    return synthetic_user_prompts(), f"synthetic FinGPT-shaped prompts ({why})", False


def serving_tokenizer(folder: Path, users: list[str], *, real: bool):
    from tests.fakes.tiny_model import build_tokenizer

    if real:
        return build_tokenizer(folder, vocab_size=SERVING_VOCAB, extra_corpus=users)
    return build_tokenizer(folder)


def product_tokenizer(folder: Path):
    """The tokenizer as the product loads a model folder (`Analyst.load`: AutoTokenizer). Once the weights' config
    is beside it, transformers loads it as Qwen2Tokenizer, which splits digits one by one like the real Qwen: count
    tokens with this one, not with the tokenizer object that was trained."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def conversation(user: str) -> list[dict]:
    from engine.data.prompts import SYSTEM_PROMPT

    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def pick_conversations(users: list[str], tokenizer, *, count: int,
                       target_tokens: int = TARGET_PROMPT_TOKENS) -> tuple[list[list[dict]], list[int]]:
    """The `count` conversations whose rendered prompt is nearest `target_tokens`, nearest first (batch 1 takes the
    first), and their token counts."""
    from engine.generation.base import count_tokens, render_chat

    sized = []
    for user in users:
        chat = conversation(user)
        sized.append((count_tokens(tokenizer, render_chat(tokenizer, chat)), chat))
    sized.sort(key=lambda pair: abs(pair[0] - target_tokens))
    chosen = sized[:count]
    if len(chosen) < count:
        raise ValueError(f"{count} prompts wanted, {len(chosen)} available")
    return [chat for _, chat in chosen], [tokens for tokens, _ in chosen]
