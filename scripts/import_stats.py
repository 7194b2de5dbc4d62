"""How tangled the package's imports are: the figures issue 27 asks to report before and after its refactor.

Prints, for greenai_dagster/ (read with `ast`, nothing imported, no dependency beyond Python):
  (i)  imports written inside functions (and the files that have any), all of them and those of the
       package's own modules: an import of our own module placed in a function body is usually there to
       dodge a cycle at import time, so that count says how much tangle is hidden (the rest mostly load a
       heavy optional library, torch or llama.cpp, only when it is used);
  (ii) import cycles among greenai_dagster modules, as strongly connected components (SCCs) of the import
       graph: the number of SCCs with more than one module (each is one "import circle": every module in it
       reaches every other) and the size of the largest. Counted twice: over module-level imports only
       (what Python runs at import time: a cycle here can break an import) and over module-level plus
       function-level imports (the dependency structure a reader has to hold; the one import-linter sees).
The number of elementary cycles is not printed: inside one SCC of 25 modules it runs to the millions and
says nothing more than the SCC's size does.

    python scripts/import_stats.py            # the figures
    python scripts/import_stats.py --verbose  # also the modules of each SCC and the files with inner imports
    python scripts/import_stats.py --json     # the same figures as JSON, for a before/after note
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "greenai_dagster"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _imports(tree: ast.AST):
    """(node, inside_function) for every import statement, at any depth."""
    def walk(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            walk_into = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from walk(child, walk_into)
    yield from walk(tree, False)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module `name` refers to: itself if it is one, else its longest prefix that is (an
    attribute imported from a module); None outside the package."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: dict) -> set[str]:
    """The package modules one import statement makes its file depend on."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:   # relative: from the importer's package, up level-1 more
            anchor = importer.split(".") if is_package else importer.split(".")[:-1]
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        # `from a.b import c`: a.b.c when c is a module, else a.b (c is an attribute of it)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    found = {_resolve(n, modules) for n in names}
    return {m for m in found if m and m != importer}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); every SCC, each sorted."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    out.append(sorted(component))
    return out


def stats() -> dict:
    modules = package_modules()
    module_level = {m: set() for m in modules}
    every = {m: set() for m in modules}
    inner_per_file: Counter = Counter()
    inner_own_per_file: Counter = Counter()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, in_function in _imports(tree):
            if in_function:
                inner_per_file[str(path.relative_to(ROOT))] += 1
            found = targets(node, name, path.name == "__init__.py", modules)
            if in_function and found:
                inner_own_per_file[str(path.relative_to(ROOT))] += 1
            every[name] |= found
            if not in_function:
                module_level[name] |= found

    def cycles(graph):
        circles = sorted((c for c in strongly_connected(graph) if len(c) > 1), key=len, reverse=True)
        return {"modules": len(graph), "edges": sum(len(v) for v in graph.values()), "cycles": len(circles),
                "largest_scc": len(circles[0]) if circles else 0, "sccs": circles}

    return {"inside_function_imports": sum(inner_per_file.values()), "files_with_inside_function_imports":
            len(inner_per_file), "inside_function_imports_per_file": dict(inner_per_file.most_common()),
            "inside_function_own_imports": sum(inner_own_per_file.values()),
            "files_with_inside_function_own_imports": len(inner_own_per_file),
            "inside_function_own_imports_per_file": dict(inner_own_per_file.most_common()),
            "module_level": cycles(module_level), "module_and_function_level": cycles(every)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list SCC modules, files with inner imports")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = stats()
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return 0
    print(f"imports inside functions: {result['inside_function_imports']} "
          f"in {result['files_with_inside_function_imports']} files; of greenai_dagster modules: "
          f"{result['inside_function_own_imports']} in {result['files_with_inside_function_own_imports']} files")
    for label, key in (("module-level imports", "module_level"),
                       ("module-level + function-level imports", "module_and_function_level")):
        g = result[key]
        print(f"import cycles over {label}: {g['cycles']} SCC(s) of >1 module, largest {g['largest_scc']} modules "
              f"({g['modules']} modules, {g['edges']} edges)")
        if args.verbose:
            for scc in g["sccs"]:
                print(f"  [{len(scc)}] " + ", ".join(m.removeprefix(PACKAGE + ".") for m in scc))
    if args.verbose:
        print("imports inside functions per file (all / of greenai_dagster modules):")
        own = result["inside_function_own_imports_per_file"]
        for path, count in result["inside_function_imports_per_file"].items():
            print(f"  {count:4d} {own.get(path, 0):4d}  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
