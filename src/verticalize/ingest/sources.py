"""Input discovery: folders (recursive), globs and single files -> (path, stable relative name) pairs."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from verticalize.errors import UserError


class SourceNotFoundError(UserError, FileNotFoundError):
    """A document source (folder, file or glob) does not exist or matches nothing."""


def _static_prefix(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: 'docs/**/*.pdf' -> docs."""
    parts = Path(pattern).parts
    prefix: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        prefix.append(part)
    return Path(*prefix) if prefix else Path(".")


def _walk(root: Path) -> tuple[list[Path], int]:
    """Files under ``root``, hidden files and folders (.git, .DS_Store) left out and counted."""
    files: list[Path] = []
    hidden = 0
    for folder, dirs, names in os.walk(root):
        hidden += sum(1 for d in dirs if d.startswith("."))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                hidden += 1
            else:
                files.append(Path(folder) / name)
    return files, hidden


def discover(sources: list[str]) -> tuple[list[tuple[Path, str]], int]:
    """(path, relative name) for every input file, sorted by name, plus the count of hidden entries left out.

    The relative name is taken from the source folder (or the glob's folder, or the file's own folder), so it
    stays the same when the project moves; names that two sources share get the source folder's name in front.
    """
    found: dict[str, tuple[Path, str]] = {}
    seen_paths: set[Path] = set()
    hidden = 0
    for source in sources:
        entries: list[tuple[Path, Path]] = []  # (file, base folder)
        if glob.has_magic(source):
            base = _static_prefix(source)
            matches = sorted(glob.glob(source, recursive=True))
            if not matches:
                raise SourceNotFoundError(f"no files match the document glob '{source}'")
            for match in map(Path, matches):
                if match.is_dir():
                    files, n = _walk(match)
                    hidden += n
                    entries += [(f, base) for f in files]
                elif match.is_file():
                    entries.append((match, base))
        else:
            path = Path(source).expanduser()
            if path.is_dir():
                files, n = _walk(path)
                hidden += n
                entries += [(f, path) for f in files]
            elif path.is_file():
                entries.append((path, path.parent))
            else:
                raise SourceNotFoundError(f"document source not found: '{source}' (give a folder, a file, or a "
                                          f"glob such as 'docs/**/*.pdf')")
        for file, base in entries:
            resolved = file.resolve()
            if resolved in seen_paths:
                continue
            seen_paths.add(resolved)
            rel = file.relative_to(base).as_posix() if file.is_relative_to(base) else file.name
            if rel in found:
                rel = f"{base.resolve().name}/{rel}"
            while rel in found:
                rel = f"_/{rel}"
            found[rel] = (file, rel)
    return [found[k] for k in sorted(found)], hidden
