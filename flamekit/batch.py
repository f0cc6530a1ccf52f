"""Running a job over many image files: finding them, reporting failures, showing progress.

Shared by ``flamekit detect``, ``segment`` and ``fit``, so that every batch command expands
folders and globs the same way and skips flamekit's own side files.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from flamekit.io.image import IMAGE_SUFFIXES

__all__ = [
    "SIDE_FILE_ENDINGS",
    "BatchSummary",
    "Failure",
    "expand_images",
    "progress_bar",
    "without_file_prefix",
]

#: Name endings of files flamekit writes beside photos; folders and globs skip them.
SIDE_FILE_ENDINGS = ("_lmk68", "_skin", "_mask", "_mask_overlay")


@dataclass
class Failure:
    """One image skipped, and why (the message names the file and the fix)."""

    image: Path
    reason: str


def expand_images(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Failure]]:
    """Files, folders (their images, not recursive) and globs -> image paths, in order.

    Explicit files are kept whatever their suffix (load_image judges them); folders and globs
    give only files with an image suffix that are not flamekit side files (``*_lmk68.png``
    overlays, ``*_skin.png`` masks). Inputs that match nothing become failures.
    """
    found: list[Path] = []
    failures: list[Failure] = []

    def is_photo(path: Path) -> bool:
        return (
            path.is_file()
            and path.suffix.lower() in IMAGE_SUFFIXES
            and not path.stem.endswith(SIDE_FILE_ENDINGS)
        )

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if is_photo(p))
            if not matches:
                failures.append(Failure(path, "folder holds no images"))
        elif path.exists():
            matches = [path]
        elif glob.has_magic(str(item)):
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
            matches = [p for p in matches if is_photo(p)]
            if not matches:
                failures.append(Failure(path, "no images match this pattern"))
        else:
            matches = []
            failures.append(Failure(path, "file not found; check the path"))
        found.extend(matches)
    unique: dict[Path, Path] = {}
    for path in found:  # the same file twice (a.png, ./a.png) runs once
        unique.setdefault(path.resolve(), path)
    return list(unique.values()), failures


def without_file_prefix(message: str, image_path: Path) -> str:
    """Messages start with the file name; the summary lists it already."""
    prefix = f"{image_path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def progress_bar():
    """A rich progress bar on stderr for a batch of images."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


@dataclass
class BatchSummary:
    """What a batch command did: results, failures, where outputs went, Ctrl-C.

    Subclasses name their outputs (``noun``) and list per-result warnings (``warnings``).
    """

    results: list = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    out_dir: Path = Path(".")
    interrupted: bool = False
    noun = "outputs"

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted

    def warnings(self) -> list[str]:
        return []

    def format(self) -> str:
        """A human-readable report: counts, then every warning and failure with its reason."""
        total = len(self.results) + len(self.failures)
        head = f"{len(self.results)} of {total} images done, {self.noun} in {self.out_dir}"
        if self.interrupted:
            head += " (interrupted by Ctrl-C; the files written are complete)"
        lines = [head, *self.warnings()]
        if self.failures:
            lines.append(f"{len(self.failures)} failed:")
            lines.extend(f"  {failure.image}: {failure.reason}" for failure in self.failures)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()
