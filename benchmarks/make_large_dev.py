"""A copy of a few-shot task layout with a larger dev split, to measure how much of a method's
test accuracy best-on-dev selection loses to a small dev set (issue 15: AG News).

For each seed the training split stays as it is; the dev split keeps its own examples and adds
examples of the other seeds' train and dev splits (never this seed's training examples, no
duplicates), drawn per class with a fixed seed up to ``--dev-per-class``. The test split is
linked, not copied. Write it outside the repository (the shared data must not be copied in)::

    python benchmarks/make_large_dev.py --task agnews --dev-per-class 64 --out /tmp/fsc16-dev256
    python benchmarks/bench_quality.py --data-dir /tmp/fsc16-dev256 --tasks agnews --methods random \\
        --sst2-extra "" --out benchmarks/results/large-dev

Prints one row per seed: the examples per class in the new dev split, and how many came from
the other seeds' splits.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections import defaultdict
from pathlib import Path

Row = tuple[str, str]


def read_split(path: Path) -> tuple[list[str], list[Row]]:
    """The header and the (text, label) rows of one ``.tsv`` split of the fsc16 layout."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or len(rows[0]) != 2:
        raise SystemExit(f"{path}: expected a header row of two tab-separated columns")
    return rows[0], [(r[0], r[1]) for r in rows[1:] if len(r) == 2]


def write_split(path: Path, header: list[str], rows: list[Row]) -> None:
    """Rows as read (no quoting, no escapes: a text read from a tab-separated line holds no tab)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + [f"{text}\t{label}" for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def link(path: Path, to: Path) -> None:
    """``path`` becomes a symbolic link to ``to`` (the shared files are linked, never copied)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(to.resolve())


def larger_dev(own_train: list[Row], own_dev: list[Row], others: list[Row], per_class: int, seed: int) -> list[Row]:
    """``own_dev`` plus examples of ``others`` (minus the training texts and duplicates), drawn
    per class until each class has ``per_class`` examples (or the pool runs out)."""
    taken = {text for text, _ in own_train} | {text for text, _ in own_dev}
    pool: dict[str, list[Row]] = defaultdict(list)
    for text, label in others:
        if text not in taken:
            taken.add(text)
            pool[label].append((text, label))
    have: dict[str, int] = defaultdict(int)
    for _, label in own_dev:
        have[label] += 1
    rng = random.Random(seed)
    rows = list(own_dev)
    for label in sorted(set(have) | set(pool)):
        extra = sorted(pool[label])
        rng.shuffle(extra)
        rows += extra[:max(0, per_class - have[label])]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/fsc16", type=Path)
    parser.add_argument("--task", default="agnews")
    parser.add_argument("--dev-per-class", type=int, default=64)
    parser.add_argument("--out", required=True, type=Path, help="a folder outside the repository")
    args = parser.parse_args(argv)
    source = args.data_dir / args.task
    if not source.is_dir():
        raise SystemExit(f"{source}: no such task folder (--data-dir is the fsc16 folder, --task one of its tasks)")
    repo = Path(__file__).resolve().parents[1]
    if args.out.resolve().is_relative_to(repo):
        raise SystemExit(f"--out {args.out} lies inside the repository; write the copy elsewhere (the shared data "
                         "is never copied into the repository)")
    seeds = sorted((p.name for p in source.iterdir() if p.is_dir() and p.name.isdigit()), key=int)
    if not seeds:
        raise SystemExit(f"{source}: no seed folders (expected <task>/<seed>/train.tsv)")
    target = args.out / args.task
    target.mkdir(parents=True, exist_ok=True)
    link(target / "test.tsv", source / "test.tsv")
    print(f"{'seed':>6} {'dev/class':>10} {'added':>6}")
    for seed in seeds:
        header, train = read_split(source / seed / "train.tsv")
        _, dev = read_split(source / seed / "dev.tsv")
        others = [row for other in seeds if other != seed for split in ("train", "dev")
                  for row in read_split(source / other / f"{split}.tsv")[1]]
        rows = larger_dev(train, dev, others, args.dev_per_class, int(seed))
        link(target / seed / "train.tsv", source / seed / "train.tsv")
        write_split(target / seed / "dev.tsv", header, rows)
        per_class = len(rows) / max(1, len({label for _, label in rows}))
        print(f"{seed:>6} {per_class:>10.0f} {len(rows) - len(dev):>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
