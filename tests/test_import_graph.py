"""No import circle anywhere in Loupe's packages.

The import-linter contracts (``pyproject.toml``) keep the layers apart but leave out imports
under ``TYPE_CHECKING`` and say nothing about circles inside one package. This test builds the
whole graph with grimp, imports inside functions and under ``TYPE_CHECKING`` included, and
asserts that no module can reach itself again: every strongly connected component is a single
module. ``app.py`` and ``serve.py`` are top-level scripts, not packages, and stay out.
"""

from __future__ import annotations

import grimp
import networkx

PACKAGES = ("adcore", "db", "services", "workers", "pages", "loupe", "api")


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (networkx), sorted."""
    imports = networkx.DiGraph()
    imports.add_nodes_from(graph.modules)
    imports.add_edges_from(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
    )
    components = networkx.strongly_connected_components(imports)
    return sorted(sorted(component) for component in components if len(component) > 1)


def _describe(graph: grimp.ImportGraph, circle: list[str]) -> str:
    """The modules of one circle and the imports (with line numbers) that close it."""
    lines = [" <-> ".join(circle)]
    for importer in circle:
        for imported in circle:
            if importer != imported and graph.direct_import_exists(
                importer=importer, imported=imported
            ):
                details = graph.get_import_details(importer=importer, imported=imported)
                line_numbers = ", ".join(str(detail["line_number"]) for detail in details)
                lines.append(f"    {importer} -> {imported} (line {line_numbers})")
    return "\n".join(lines)


def test_the_strongly_connected_components_are_single_modules() -> None:
    graph = grimp.build_graph(
        *PACKAGES,
        include_external_packages=False,
        exclude_type_checking_imports=False,
        cache_dir=None,
    )
    assert len(graph.modules) > 100, "grimp found too few modules: is the repository on sys.path?"
    circles = _circles(graph)
    message = "\n".join(_describe(graph, circle) for circle in circles)
    assert not circles, f"{len(circles)} import circle(s):\n{message}"
