"""Calls to the LLM judge shared by the judged kinds (BiMed-MBench, UPHILL).

Judgements come from any OpenAI-compatible endpoint through `bimedix2.llm_client.LLMClient`,
whose SQLite cache (`<out>/<task>/judge_cache.sqlite`) makes an interrupted run resume without
paying twice. A request carries the model, the messages and the temperature, plus `max_tokens`
only when the task sets it (the released BiMed-MBench scripts send none).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from ..errors import ConfigError
from .spec import RunConfig


@dataclass(frozen=True)
class JudgeOptions:
    """A task YAML's `judge:` settings."""

    temperature: float = 0.0
    max_tokens: int | None = None
    model: str | None = None  # the judge the benchmark's authors used; --judge-model overrides it


def judge_model(cfg: RunConfig, options: JudgeOptions | None = None) -> str | None:
    """The judge model of a run: --judge-model, else the task's `judge.model`."""
    return cfg.judge_model or (options.model if options else None)


def require_judge(cfg: RunConfig, task: str, options: JudgeOptions | None = None) -> None:
    """ConfigError unless the run names a judge endpoint and a model (flag or task YAML)."""
    if not cfg.judge_url or not judge_model(cfg, options):
        default = f" (the task's own judge is {options.model})" if options and options.model else ""
        raise ConfigError(
            f"task {task} needs a judge: pass --judge-url URL/v1 and --judge-model NAME{default}; "
            "for OpenAI itself: --judge-url https://api.openai.com/v1 with OPENAI_API_KEY set"
        )


def judge_client(cfg: RunConfig, task: str, options: JudgeOptions | None = None):  # noqa: ANN201 - LLMClient
    """An LLMClient for the configured judge endpoint with a per-task cache."""
    require_judge(cfg, task, options)
    from ..llm_client import LLMClient, LLMConfig

    return LLMClient(
        LLMConfig(
            base_url=cfg.judge_url,
            model=judge_model(cfg, options),
            cache_path=cfg.out_dir / task / "judge_cache.sqlite",
        )
    )


def judge_info(cfg: RunConfig, options: JudgeOptions | None = None) -> dict[str, Any]:
    """The judge recorded in a results entry (endpoint, model, request settings)."""
    info: dict[str, Any] = {"url": cfg.judge_url, "model": judge_model(cfg, options)}
    if options is not None:
        info.update(temperature=options.temperature, max_tokens=options.max_tokens)
        if options.model:
            info["task_model"] = options.model
    return info


async def _judge_all(client: Any, prompts: list[list[dict[str, str]]], options: JudgeOptions, desc: str) -> list[str]:
    bar = tqdm(total=len(prompts), desc=desc, unit="call")

    async def one(messages: list[dict[str, str]]) -> str:
        reply = await client.chat(messages, temperature=options.temperature, max_tokens=options.max_tokens)
        bar.update(1)
        return reply.text

    try:
        async with client:
            return list(await asyncio.gather(*(one(m) for m in prompts)))
    finally:
        bar.close()


def judge_all(cfg: RunConfig, task: str, prompts: list[list[dict[str, str]]], options: JudgeOptions) -> list[str]:
    """The judge's reply to every prompt (chat messages), concurrently, cached per task."""
    return asyncio.run(_judge_all(judge_client(cfg, task, options), prompts, options, f"{task} judge"))
