"""Every ```python block of README.md runs as written.

The blocks of one ``##`` section share a namespace and run in order, as a reader would run
them; each section starts from nothing (its first block imports what it uses), so a reader
may start at any section. They run in a temporary working folder (the files they write land
there) with NumPy as the global backend, restored afterwards. No block is edited and nothing
in portnn is patched: the README's examples are written to run quickly as they stand (a
subset of MNIST, few epochs) while they show the real calls.

What a section needs is read from its text: ``load_mnist`` needs the real MNIST files (the
``mnist_dir`` fixture, handed to the blocks through ``PORTNN_DATA_DIR``, so a missing copy
skips with the fixture's reason instead of downloading), ``pn.plot``/``pn.report`` need
matplotlib, ``"torch"`` needs PyTorch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import portnn as pn

README = Path(__file__).resolve().parents[1] / "README.md"


def sections(text: str) -> dict[str, list[tuple[int, str]]]:
    """``{section title: [(first line number of the code, code), ...]}`` for the ```python blocks, in order."""
    out: dict[str, list[tuple[int, str]]] = {}
    title, block, start = "(top)", None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        if block is None and line.startswith("## "):
            title = line[3:].strip()
        elif block is None and line.strip() == "```python":
            block, start = [], number + 1
        elif block is not None and line.strip() == "```":
            out.setdefault(title, []).append((start, "\n".join(block) + "\n"))
            block = None
        elif block is not None:
            block.append(line)
    assert block is None, f"README.md: the ```python block from line {start} is never closed"
    return out


SECTIONS = sections(README.read_text(encoding="utf-8"))

#: What a section's text asks for: the pattern, and why it skips without it.
NEEDS = {
    r"load_mnist\(": "mnist",
    r"pn\.(plot|report)\.": "matplotlib",
    r"[\"']torch[\"']|\bimport torch\b": "torch",
    r"\.export_onnx\(": "onnx",
}


#: What the README says a section's code achieves, checked on the names it leaves (beyond running at all).
CLAIMS = {
    "What it is": lambda ns: ns["accuracy"] > 0.975,  # "about 0.98 after 3 epochs"
    "Transfer learning": lambda ns: ns["accuracy"] > 0.85 and ns["model"].get_layer("conv2d").trainable is False,  # "about 90%"
    "Backends": lambda ns: ns["model"].backend.name == "numpy",  # model.to("numpy") moved it
    "Writing your own loop": lambda ns: float(ns["loss"]) < 0.2,  # the moons are learned
    "Saving, checkpoints and resuming": lambda ns: (Path("run") / "checkpoint.safetensors").is_file(),
    "Proof tools, ONNX, PyTorch weights": lambda ns: (  # the weights went both ways; the export wrote a graph
        bool(ns["torch"].equal(ns["net"][0].weight, ns["torch"].from_numpy(pn.to_numpy(ns["model"].layers[0].weight.data))))
        and Path("mnist.onnx").stat().st_size > 400_000
    ),
    "Layers of layers, and sequence models": lambda ns: ns["accuracy"] > 0.9 and "2.block.0.weight" in ns["gpt"].state_dict(),
    "Streamed data": lambda ns: ns["accuracy"] > 0.9 and (Path("streamed") / "checkpoint.safetensors").is_file(),
    "See inside the network": lambda ns: (Path("report") / "index.html").is_file() and Path("curves.png").is_file(),
}


def test_the_readme_has_runnable_sections() -> None:
    """The parser found the sections (a README without python blocks would make the test below vacuous)."""
    assert set(SECTIONS) == set(CLAIMS)  # a new section with python code gets its claim here
    for title, blocks in SECTIONS.items():
        for line, code in blocks:
            compile(code, f"README.md:{line}", "exec")  # every block is Python as printed (no "..." in a call)
            assert "..." not in re.sub(r"#.*", "", code), f"README.md:{line} ({title}) elides code with '...'"


@pytest.mark.parametrize("title", list(SECTIONS))
def test_readme_section_runs_as_written(
    title: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = re.sub(r"#.*", "", "".join(code for _, code in SECTIONS[title]))  # what the code calls, not its comments
    needs = {need for pattern, need in NEEDS.items() if re.search(pattern, text)}
    if "matplotlib" in needs:
        pytest.importorskip("matplotlib", reason=f"README section {title!r} draws with matplotlib")
    why = pn.backends.get_adapter("torch").import_error() if "torch" in needs else None
    if why is not None:
        pytest.skip(f"README section {title!r} uses the torch backend: {why}")
    if "onnx" in needs:
        pytest.importorskip("ndonnx", reason=f"README section {title!r} exports ONNX with ndonnx (portnn[onnx])")
    if "mnist" in needs:
        monkeypatch.setenv("PORTNN_DATA_DIR", str(request.getfixturevalue("mnist_dir")))  # skips when absent
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    with pn.use_backend("numpy"):
        for line, code in SECTIONS[title]:
            # line numbers of a traceback are the README's own
            exec(compile("\n" * (line - 1) + code, str(README), "exec"), namespace)
        assert CLAIMS[title](namespace), f"README section {title!r} ran but does not do what its text says"
