"""Tasks from Hugging Face datasets, loaded from local copies (no hub is reachable here)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rlprompt.errors import ConfigError, DataError
from rlprompt.tasks import load_hf, load_task

POLARITY = [" terrible", " great"]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


# -- Hugging Face datasets, from local copies (no hub here) ---------------------------


def _csv_dataset(folder: Path, n_per_class: int = 10, names: bool = False) -> Path:
    folder.mkdir()
    for split, n in (("train", n_per_class), ("test", 3)):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for i in range(n):
                for label in (0, 1):
                    w.writerow([f"{split} {label} {i}", ["neg", "pos"][label] if names else label])
    return folder


def test_hf_local_csv_folder(tmp_path: Path) -> None:
    folder = _csv_dataset(tmp_path / "ds")
    task = load_hf(folder, k_shot=4, seed=1, verbalizers=POLARITY, cache_dir=tmp_path / "cache")
    assert task.class_counts("train") == [4, 4] and task.class_counts("dev") == [4, 4]
    assert not set(task.texts("train")) & set(task.texts("dev"))
    assert all(t.startswith("train ") for t in task.texts("train") + task.texts("dev"))
    assert sorted(task.texts("test")) == sorted(f"test {y} {i}" for i in range(3) for y in (0, 1))
    for ex in task.train + task.dev + task.test:
        assert ex.text.split()[1] == str(ex.label)
    again = load_hf(folder, k_shot=4, seed=1, verbalizers=POLARITY, cache_dir=tmp_path / "cache")
    other = load_hf(folder, k_shot=4, seed=2, verbalizers=POLARITY, cache_dir=tmp_path / "cache")
    assert again.train == task.train and other.train != task.train


def test_hf_string_labels_and_registered_task(tmp_path: Path) -> None:
    folder = _csv_dataset(tmp_path / "ds", names=True)
    task = load_hf(folder, k_shot=2, task="mr", label_names=["neg", "pos"], cache_dir=tmp_path / "c")
    assert task.name == "mr" and task.verbalizers == POLARITY
    assert all(ex.text.split()[1] == str(ex.label) for ex in task.train)


def test_hf_save_to_disk_classlabel_and_remap(tmp_path: Path) -> None:
    import datasets

    feats = datasets.Features(
        {
            "text": datasets.Value("string"),
            "coarse_label": datasets.ClassLabel(names=["ABBR", "ENTY", "DESC"]),
        }
    )
    rows = {"text": [f"q{i}" for i in range(12)], "coarse_label": [i % 3 for i in range(12)]}
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features=feats),
            "test": datasets.Dataset.from_dict(rows, features=feats),
        }
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    task = load_hf(tmp_path / "saved", k_shot=2, label_column="coarse_label")
    assert task.verbalizers == [" ABBR", " ENTY", " DESC"] and task.label_names == ["ABBR", "ENTY", "DESC"]
    assert all(int(ex.text[1:]) % 3 == ex.label for ex in task.test)
    # a registered task's label order is applied (trec: HF ABBR=0 is RLPrompt's 'Expression' = 2)
    with pytest.raises(DataError, match="class 3 has 0 examples"):
        load_hf(tmp_path / "saved", k_shot=2, task="trec", text_column="text")


def test_hf_single_file_test_is_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl",
        "".join(json.dumps({"sentence": f"s{i}", "label": i % 2}) + "\n" for i in range(20)),
    )
    task = load_hf(path, k_shot=3, verbalizers=POLARITY, cache_dir=tmp_path / "c")
    assert len(task.test) == 20 - 12
    assert not set(task.texts("test")) & (set(task.texts("train")) | set(task.texts("dev")))
    assert len(load_hf(path, k_shot=3, verbalizers=POLARITY, test_size=5, cache_dir=tmp_path / "c").test) == 5


def test_hf_errors(tmp_path: Path) -> None:
    folder = _csv_dataset(tmp_path / "ds", n_per_class=3)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"class 0 has 3 examples, fewer than the 8 needed for 4-shot"):
        load_hf(folder, k_shot=4, verbalizers=POLARITY, cache_dir=cache)
    with pytest.raises(DataError, match=r"no text column 'body'; columns present: \['text', 'label'\]"):
        load_hf(folder, k_shot=1, verbalizers=POLARITY, text_column="body", cache_dir=cache)
    with pytest.raises(ConfigError, match="pass --verbalizers"):
        load_hf(folder, k_shot=1, cache_dir=cache)
    with pytest.raises(DataError, match="no split 'validation'"):
        load_hf(folder, k_shot=1, verbalizers=POLARITY, test_split="validation", cache_dir=cache)
    with pytest.raises(DataError, match="cannot load as a dataset"):
        load_hf(write(tmp_path / "bad.json", "{not json"), verbalizers=POLARITY, cache_dir=cache)


def test_hf_hub_unreachable_is_a_data_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying
    with pytest.raises(DataError, match=r"'glue/sst2'.*hub may be unreachable.*fsc16 folder") as info:
        load_task("sst-2", hf=True)
    assert info.value.__cause__ is not None


def test_load_task_hf_local_path(tmp_path: Path) -> None:
    import datasets

    rows = {"sentence": [f"s{i}" for i in range(8)], "label": [i % 2 for i in range(8)]}
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "validation": datasets.Dataset.from_dict(rows)}
    ).save_to_disk(str(tmp_path / "sst2"))
    task = load_task("sst-2", hf=str(tmp_path / "sst2"), k_shot=2, seed=3)
    assert task.name == "sst-2" and "test validation" in task.source and len(task.test) == 8
