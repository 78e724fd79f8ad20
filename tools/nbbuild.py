"""Tiny helper to write a notebook from a list of cells (used once to author notebooks;
notebooks are then edited as notebooks). Usage: see the notebooks' authoring scripts."""
from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def build(path: str, cells: list[tuple[str, str]]) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    first_code = True
    for kind, src in cells:
        src = src.strip("\n")
        if kind == "md":
            nb.cells.append(new_markdown_cell(src))
        else:
            c = new_code_cell(src)
            if first_code:
                c.metadata["tags"] = ["parameters"]
                first_code = False
            nb.cells.append(c)
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    nbformat.write(nb, path)
