"""The docs a newcomer reads cite only what a clone has, and list what the repository holds."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "examples" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# a path into the repository: one of its folders, or a Markdown file at its root
REPO_PATH = re.compile(
    r"`((?:benchmarks|docs|examples|tests|lsd|gee|training|pipeline|ci)/[\w./-]+\.\w+|[A-Z]+\.md)`"
)
ROOT_DOC = re.compile(r"(?<![\w/.])([A-Z]+\.md)\b")  # README.md, DESIGN.md ... named bare
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked() -> set[str]:
    """Files a clone has: tracked, or new and not ignored."""
    argv = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    try:
        out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return set(out.splitlines())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_cite_only_files_the_repository_holds(doc: Path) -> None:
    """A file a doc cites as a source (a design note, a results file) must be in a clone; git-
    ignored outputs such as benchmarks/results/*.json are not."""
    files = tracked()
    text = doc.read_text()
    cited = set(REPO_PATH.findall(text)) | set(ROOT_DOC.findall(text))
    cited |= {
        str((doc.parent / target).resolve().relative_to(REPO))
        for target in LINK.findall(text)
        if "://" not in target and (doc.parent / target).resolve().is_relative_to(REPO)
    }
    folders = {str(Path(f).parent) for f in files}
    missing = sorted(c for c in cited if c not in files and c not in folders and c != ".")
    assert missing == [], f"{doc.name} cites {missing}"


def test_readme_lists_every_benchmark() -> None:
    readme = (REPO / "README.md").read_text()
    scripts = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py") if p.stem != "__init__")
    assert [s for s in scripts if f"benchmarks/{s}.py" not in readme
            and f"benchmarks.{s}" not in readme] == []  # fmt: skip


def test_readme_lists_every_command() -> None:
    from lsd.pipeline.cli import main

    readme = (REPO / "README.md").read_text()
    assert [name for name in main.commands if f"`lsd {name}" not in readme] == []


def test_docs_quote_the_cpu_step_time_one_way() -> None:
    """docs/train.md once gave the same training step as 1.86 s and as 3.1 s."""
    text = (REPO / "docs" / "train.md").read_text()
    table = re.search(r"\| fp32, channels-last \(default\) \| [\d.]+ s \(.*?\) \| ([\d.]+) s", text)
    assert table is not None
    quoted = re.findall(r"training step\s+\(batch 4, 256 px, 11 layers\) takes ([\d.]+) s", text)
    assert quoted == [table.group(1)]


def test_predict_md_quotes_the_forward_times_train_md_tabulates() -> None:
    """The 512 px forward pass per CPU mode is measured once (docs/train.md, "CPU speed");
    docs/predict.md quotes the same figures."""
    train = (REPO / "docs" / "train.md").read_text()
    rows = {
        m: re.search(rf"\| {re.escape(m)}[^|]*\| ([\d.]+) s", train)
        for m in ("fp32, contiguous", "fp32, channels-last", "bf16 + channels-last", "ONNX Runtime")
    }
    forward = {m: r.group(1) for m, r in rows.items() if r}
    assert len(forward) == 4
    predict = " ".join((REPO / "docs" / "predict.md").read_text().split())
    quoted = re.search(r"([\d.]+) s \(fp32 contiguous, lsd before\), ([\d.]+) s "
                       r"\(channels-last\), ([\d.]+) s \(ONNX Runtime\), ([\d.]+) s \(bf16\)",
                       predict)  # fmt: skip
    assert quoted is not None
    assert list(quoted.groups()) == [
        forward["fp32, contiguous"],
        forward["fp32, channels-last"],
        forward["ONNX Runtime"],
        forward["bf16 + channels-last"],
    ]
