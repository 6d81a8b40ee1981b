"""The shape of the code: imports go one way, sources stand on their own, and a source's whole
contract is declared on BaseSource."""

import ast
import sys
from pathlib import Path

from collection.sources import BaseSource, QuotaKind, get_source

PACKAGE = Path(__file__).resolve().parent.parent / "collection"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports at run time (function-local imports included; imports
    under `if TYPE_CHECKING:` excluded), resolved to absolute names."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking_block(child):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_module_of_collection_imports_a_module_that_imports_it_back():
    graph = _graph()

    def reaches(start: str) -> set[str]:
        seen, stack = set(), list(graph[start])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(graph[node])
        return seen

    assert sorted(name for name in graph if name in reaches(name)) == []


def test_services_are_layered_one_way():
    graph = _graph()
    lifecycle = graph["collection.services.lifecycle"]
    assert lifecycle <= {"collection.models", "collection.services.errors"}
    lower = ["collection.services.engine", "collection.services.recovery", "collection.services.checkpoint",
             "collection.services.budget", "collection.services.quota", "collection.services.lifecycle"]
    for name in lower:
        assert "collection.services.runs" not in graph[name], f"{name} imports the operator commands above it"
    assert "collection.tasks" not in graph["collection.services.engine"]


def test_sources_import_only_sources_the_standard_library_their_http_client_and_configuration():
    allowed_third_party = {"httpx", "django.conf", "django.utils.module_loading"}
    for path in (PACKAGE / "sources").rglob("*.py"):
        for imported in _imports(path):
            top = imported.split(".")[0]
            if imported.startswith("collection."):
                assert imported.startswith("collection.sources"), f"{path.name} imports {imported}"
            elif top not in sys.stdlib_module_names and top != "__future__":
                assert any(imported == a or imported.startswith(a + ".") for a in allowed_third_party), (
                    f"{path.name} imports {imported}"
                )


def test_the_engine_and_the_estimate_never_probe_a_source_with_getattr_or_hasattr():
    for name in ("engine.py", "estimate.py", "recovery.py", "checkpoint.py", "quota.py"):
        tree = ast.parse((PACKAGE / "services" / name).read_text())
        probes = [ast.unparse(node) for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr")
                  and "source" in ast.unparse(node.args[0])]
        assert probes == [], f"{name}: {probes}"


def test_a_source_declares_every_capability_with_a_default(settings):
    base = BaseSource()
    assert base.quota_kind == QuotaKind.NONE and base.daily_call_quota == 0 and not base.can_probe
    assert base.quota_resets_at().tzinfo is not None
    demo = get_source("demo")
    assert demo.quota_kind == QuotaKind.NONE and not demo.can_probe
    ebay = get_source("ebay")
    assert ebay.quota_kind == QuotaKind.DAILY_CALLS and ebay.can_probe
