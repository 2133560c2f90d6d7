"""`bimedix2 data ...` (validate, build, convert, rewrite, mix, overlap), `bimedix2 translate`, `bimedix2 review`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..types import RESEARCH_NOTICE


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="BiMed-V data: validate, build sources, convert, rewrite, mix, overlap")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    validate = sub.add_parser("validate", help="check a JSONL record file; reports every bad record by line and id")
    validate.add_argument("file", type=Path)
    validate.add_argument("--image-root", type=Path, default=None, help="also check that image files exist here")
    validate.add_argument("--show", type=int, default=50, help="print at most this many issues (default 50)")
    validate.add_argument("--json", action="store_true", help="print the full report as JSON")
    validate.set_defaults(func=run_validate)

    from ..data.sources import BUILDERS

    build = sub.add_parser("build", help="convert one public dataset (its released layout) into BiMed-V JSONL")
    build.add_argument("source", choices=sorted(BUILDERS))
    build.add_argument("dataset_dir", type=Path, help="the dataset folder as downloaded")
    build.add_argument("out", type=Path, help="output .jsonl")
    build.set_defaults(func=run_build)

    convert = sub.add_parser("convert", help="convert records between .jsonl, LLaVA .json and .parquet")
    convert.add_argument("src", type=Path)
    convert.add_argument("dst", type=Path)
    convert.set_defaults(func=run_convert)

    rewrite = sub.add_parser("rewrite", help="LLM rewriting: vqa-detail, caption-conversation, mcq-dialogue")
    rewrite.add_argument("kind", choices=("vqa-detail", "caption-conversation", "mcq-dialogue"))
    rewrite.add_argument("input", type=Path)
    rewrite.add_argument("out_dir", type=Path)
    _add_llm_options(rewrite, "configs/data/rewrite.yaml")
    rewrite.set_defaults(func=run_rewrite)

    mix = sub.add_parser("mix", help="compose a training mixture (counts or ratios), dedupe, split, table + chart")
    mix.add_argument("config", type=Path, help="mixture YAML (see configs/data/mix-example.yaml)")
    mix.add_argument("out_dir", type=Path)
    mix.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    mix.set_defaults(func=run_mix)

    from ..data.overlap import HASH_KINDS, OverlapConfig

    dflt = OverlapConfig()
    overlap = sub.add_parser(
        "overlap", help="contamination audit: training records whose image or text matches a test sample"
    )
    overlap.add_argument("train", type=Path, help="training records (.jsonl/.json/.parquet) or a `data mix` folder")
    overlap.add_argument(
        "test_sets",
        nargs="+",
        metavar="TEST_SET",
        help="TASK=PATH (an eval task: vqa-rad, slake, path-vqa, bimed-mbench, mimic-cxr-report, ...), "
        "FORMAT=PATH (an eval reader, e.g. hf-vqa-parquet), NAME=FILE or FILE (BiMed-V records)",
    )
    overlap.add_argument("--out", type=Path, required=True, help="folder for matches.jsonl, summary.json, config.json")
    overlap.add_argument("--ngram", type=int, default=dflt.ngram, help="word n-gram length (default %(default)s)")
    overlap.add_argument(
        "--min-text-overlap",
        type=float,
        default=dflt.min_text_overlap,
        help="text match: at least this share of a test sample's n-grams (default %(default)s: any shared n-gram)",
    )
    overlap.add_argument(
        "--common-ngram-limit",
        type=int,
        default=dflt.common_ngram_limit,
        help="ignore n-grams held by more than N test samples (default %(default)s: off)",
    )
    overlap.add_argument("--hash", choices=HASH_KINDS, default=dflt.image_hash, help="perceptual hash (%(default)s)")
    overlap.add_argument(
        "--max-distance",
        type=int,
        default=dflt.max_distance,
        help="image match: Hamming distance at most D of 64 bits (default %(default)s)",
    )
    overlap.add_argument("--image-root", type=Path, default=None, help="training images' root (default: its folder)")
    overlap.add_argument(
        "--workers", type=int, default=dflt.workers, help="processes hashing training images (default %(default)s)"
    )
    overlap.add_argument("--no-images", action="store_true", help="skip the image check")
    overlap.add_argument("--no-text", action="store_true", help="skip the text check")
    overlap.add_argument("--exclude", type=Path, default=None, metavar="FILE", help="write the unmatched records here")
    overlap.add_argument("--no-progress", action="store_true", help="hide the progress bars (stderr)")
    overlap.set_defaults(func=run_overlap)

    translate = subparsers.add_parser("translate", help="English->Arabic translate, score, refine, review queue")
    tsub = translate.add_subparsers(dest="translate_command", required=True, metavar="ACTION")
    trun = tsub.add_parser("run", help="translate a JSONL file into OUT_DIR (resumable: rerun to continue)")
    trun.add_argument("input", type=Path)
    trun.add_argument("out_dir", type=Path)
    _add_llm_options(trun, "configs/data/translate.yaml")
    trun.set_defaults(func=run_translate)
    tstats = tsub.add_parser("stats", help="print the translation statistics of a job folder")
    tstats.add_argument("out_dir", type=Path)
    tstats.set_defaults(func=run_translate_stats)
    texport = tsub.add_parser("export", help="rewrite OUT_DIR/translated.jsonl (or --to FILE) from the job state")
    texport.add_argument("out_dir", type=Path)
    texport.add_argument("--to", type=Path, default=None)
    texport.set_defaults(func=run_translate_export)

    review = subparsers.add_parser("review", help="review queued translations in the terminal (accept/edit/reject)")
    review.add_argument("out_dir", type=Path, help="a `bimedix2 translate run` output folder")
    review.add_argument("--list", action="store_true", help="only list the pending queue")
    review.add_argument("--editor", action="store_true", help="edit in $EDITOR instead of line by line")
    review.set_defaults(func=run_review)


def _add_llm_options(parser: argparse.ArgumentParser, default_config: str) -> None:
    parser.add_argument("--config", type=Path, default=None, help=f"YAML config (e.g. {default_config})")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override, e.g. llm.model=x")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default=None, help="model name at that endpoint")
    parser.add_argument("--concurrency", type=int, default=None, help="requests in flight at once")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _load(args: argparse.Namespace, schema: type) -> Any:
    from ..config import apply_overrides, from_dict, load_yaml

    data = load_yaml(args.config) if args.config else {}
    overrides = list(args.set)
    if args.base_url:
        overrides.append(f"llm.base_url={args.base_url}")
    if args.model:
        overrides.append(f"llm.model={args.model}")
    if args.concurrency:
        overrides.append(f"llm.max_concurrency={args.concurrency}")
    data = apply_overrides(data, overrides)
    if "llm" not in data:
        raise ConfigError("no LLM endpoint: give --config, or --base-url and --model")
    try:
        return from_dict(schema, data)
    except ConfigError as exc:
        raise ConfigError(f"{args.config or 'command line'}: {exc}") from None


def run_validate(args: argparse.Namespace) -> int:
    from ..data.io import validate_file

    report = validate_file(args.file, image_root=args.image_root, progress=sys.stderr.isatty())
    if args.json:
        payload = {
            "file": str(report.path),
            "records": report.total,
            "valid_records": report.valid,
            "bad_records": len(report.issues),
            "missing_images": report.missing_images,
            "issues": [{"line": i.line, "id": i.id, "problems": list(i.problems)} for i in report.issues],
        }
        print(json.dumps(payload, ensure_ascii=False, indent=1))
    else:
        for issue in report.issues[: args.show]:
            print(f"{args.file}: {issue}")
        if len(report.issues) > args.show:
            print(f"... and {len(report.issues) - args.show} more (use --json for all)")
        verdict = "OK" if report.ok else f"{report.valid} valid, {len(report.issues)} bad record(s)"
        print(f"{args.file}: {report.total} records, {verdict}")
    return 0 if report.ok else 1


def run_build(args: argparse.Namespace) -> int:
    from ..data.sources import build_source

    report = build_source(args.source, args.dataset_dir, args.out)
    print(json.dumps(report.as_dict(), indent=1))
    if report.missing_images:
        print(f"warning: {len(report.missing_images)} item(s) skipped for missing images", file=sys.stderr)
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from ..data.io import iter_records, write_jsonl, write_parquet

    records = iter_records(args.src)
    if args.dst.suffix == ".parquet":
        count = write_parquet(records, args.dst)
    elif args.dst.suffix == ".jsonl":
        count = write_jsonl(records, args.dst)
    else:
        raise ConfigError(f"{args.dst}: output must end in .jsonl or .parquet")
    print(f"wrote {count} records to {args.dst}")
    return 0


def run_rewrite(args: argparse.Namespace) -> int:
    from ..data.rewrite import RewriteConfig
    from ..data.rewrite import run_rewrite as rewrite

    cfg = _load(args, RewriteConfig)
    summary, stats = rewrite(args.kind, args.input, args.out_dir, cfg, progress=not args.no_progress)
    print(json.dumps(stats, ensure_ascii=False, indent=1))
    return 0


def run_mix(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..data.mixing import MixConfig, mix

    cfg = load_config(args.config, MixConfig, args.set)
    result = mix(cfg, args.out_dir)
    print(result.table)
    print(f"chart: {result.chart}")
    return 0


def run_overlap(args: argparse.Namespace) -> int:
    from ..data.overlap import OverlapConfig, audit, resolve_train_file
    from ..eval.metrics.normalize import normalize_arabic

    cfg = OverlapConfig(
        ngram=args.ngram,
        min_text_overlap=args.min_text_overlap,
        common_ngram_limit=args.common_ngram_limit,
        text=not args.no_text,
        images=not args.no_images,
        image_hash=args.hash,
        max_distance=args.max_distance,
        image_root=str(args.image_root) if args.image_root else None,
        workers=args.workers,
    )
    cfg.validate()
    resolve_train_file(args.train)  # a missing training file fails before the test sets are read
    sets = [_overlap_test_set(spec) for spec in args.test_sets]
    result = audit(
        args.train, sets, cfg, args.out, fold=normalize_arabic, exclude=args.exclude, progress=not args.no_progress
    )
    print(f"training file: {result.train_file} ({result.train_records} records)")
    print(
        "| test set | samples | text-checkable | test images | train records | image matches | text matches "
        "| matched fraction | test samples hit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in result.sets:
        print(
            f"| {s.test_set} | {s.test_samples} | {s.text_checkable} | {s.test_images} | {s.train_records} "
            f"| {s.image_matches} | {s.text_matches} | {s.matched_fraction:.4f} "
            f"| {s.test_samples_matched} ({s.test_fraction:.4f}) |"
        )
    unreadable = result.train_images_unreadable + sum(s.test_images_unreadable for s in result.sets)
    print(f"matched training records (any test set): {result.matched_records}")
    if unreadable:
        print(f"unreadable images: {unreadable} (listed in {args.out / 'unreadable_images.jsonl'})")
    if result.excluded_file is not None:
        print(f"wrote {result.kept_records} unmatched records to {result.excluded_file}")
    print(f"matches: {args.out / 'matches.jsonl'}")
    return 0


def _overlap_test_set(spec: str) -> Any:
    """One TEST_SET argument read with the eval readers (TASK=PATH, FORMAT=PATH) or as BiMed-V records."""
    from ..data.overlap import BenchmarkSet, items_from_records, items_from_samples
    from ..eval.datasets import READERS, read_dataset, read_mbench
    from ..eval.tasks import list_tasks, load_task

    name, sep, raw = spec.partition("=")
    if not sep:
        name, raw = Path(spec).stem, spec
    path = Path(raw).expanduser()
    if name in list_tasks():
        task = load_task(name)
        if task.kind == "mbench":
            samples = read_mbench(path)
        elif task.dataset_format:
            samples = read_dataset(task.dataset_format, path, task.dataset_options, name)
        else:
            raise ConfigError(f"{spec}: task {name!r} has no test-set reader the audit can use")
        origin = {"path": str(path), "task": name, "format": task.dataset_format or task.kind}
        return BenchmarkSet(name, items_from_samples(samples), origin)
    if name in READERS:
        samples = read_dataset(name, path, {}, name)
        return BenchmarkSet(name, items_from_samples(samples), {"path": str(path), "format": name})
    if path.is_file():
        return BenchmarkSet(name, items_from_records(path), {"path": str(path), "format": "bimed-v records"})
    readable = [t for t in list_tasks() if t not in ("mcq", "uphill")]
    raise ConfigError(
        f"{spec}: not a test set: {name!r} is no eval task ({', '.join(readable)}) or reader "
        f"({', '.join(sorted(READERS))}), and {path} is not a record file"
    )


def run_translate(args: argparse.Namespace) -> int:
    from ..data.translate.pipeline import OUTPUT, TranslateConfig, run_translation

    cfg = _load(args, TranslateConfig)
    summary, stats = run_translation(args.input, args.out_dir, cfg, progress=not args.no_progress)
    print(f"translated {summary.processed_now} record(s) now ({summary.already_done} finished before, unchanged)")
    _print_changes(summary)
    _print_stats(stats)
    print(f"output: {args.out_dir / OUTPUT}")
    return 0


def _print_changes(summary: Any) -> None:
    """Records redone because the input changed since an earlier run, and records removed from it."""
    for verb, count, ids in (
        ("re-done (content changed since the last run)", summary.redone_count, summary.redone),
        ("removed from the input (dropped from the job)", summary.removed_count, summary.removed),
    ):
        if count:
            more = f" ... and {count - len(ids[:20])} more (stats.json lists up to 1000)" if count > 20 else ""
            print(f"{count} record(s) {verb}: {', '.join(ids[:20])}{more}")


def _print_stats(stats: dict[str, Any]) -> None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    print(RESEARCH_NOTICE)
    print(f"records translated:                 {stats['records_translated']}")
    print(f"below threshold at first score:     {pct(stats['share_below_threshold_at_first'])}")
    print(f"mean refinement rounds (all):       {stats['mean_refinement_rounds']}")
    print(f"mean rounds (refined records):      {stats['mean_rounds_when_refined']}")
    print(f"recovered (of those below):         {pct(stats['share_recovered_of_below'])}")
    print(f"sent to human review:               {pct(stats['share_sent_to_humans'])} {stats['sent_to_humans']}")
    print(f"review decisions / pending:         {stats['review_decisions']} / {stats['review_pending']}")
    if stats.get("invalid_input_records") or stats.get("skipped_not_english"):
        print(f"invalid input lines: {stats['invalid_input_records']}, not English: {stats['skipped_not_english']}")
    for bad in stats.get("invalid_input", [])[:20]:
        print(f"  invalid line {bad['line']}" + (f" (id {bad['id']})" if bad["id"] else "") + f": {bad['error']}")
    if stats.get("invalid_input_records", 0) > 20:
        print("  ... (stats.json lists up to 1000 invalid lines)")


def _store(out_dir: Path):  # noqa: ANN202
    from ..data.jobstore import JobStore
    from ..data.translate.pipeline import JOB_DB
    from ..errors import RecordError

    if not (out_dir / JOB_DB).is_file():
        raise RecordError(f"{out_dir}: no translation or rewrite job here ({JOB_DB} missing)")
    return JobStore(out_dir / JOB_DB)


def run_translate_stats(args: argparse.Namespace) -> int:
    from ..data.translate.pipeline import translation_stats

    with _store(args.out_dir) as store:
        _print_stats(translation_stats(store))
    return 0


def run_translate_export(args: argparse.Namespace) -> int:
    from ..data.translate.pipeline import OUTPUT, export_translations

    target = args.to or args.out_dir / OUTPUT
    with _store(args.out_dir) as store:
        count = export_translations(store, target)
    print(f"wrote {count} records to {target}")
    return 0


def run_review(args: argparse.Namespace) -> int:
    import os

    from ..data.review import display, review_session

    if args.list:
        with _store(args.out_dir) as store:
            pending = list(store.pending_review())
        for item in pending:
            r = item.result
            scores = f"\tfirst={r.first_score}\tfinal={r.final_score}" if r.first_score is not None else ""
            print(f"{item.idx}\t{r.rec_id}\t{r.review_reason}{scores}")
            if r.output:
                print("\t" + display(r.output["conversations"][-1]["value"])[:200])
        print(f"{len(pending)} pending")
        return 0
    editor = os.environ.get("EDITOR") if args.editor else None
    if args.editor and not editor:
        raise ConfigError("--editor needs the EDITOR environment variable")
    review_session(args.out_dir, editor=editor)
    return 0
