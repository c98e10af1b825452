"""The gateway uses Sanic's public API only (issue 17): a private attribute can change in any release,
and on 24.12.0 Answer's override of one that did not exist yet let CR/LF through to the wire."""

import ast

from stack import REPO


def private_uses(source: str) -> list[str]:
    """Underscore attributes of Sanic objects: of a name imported from sanic, and of `self`, `super()`
    or the class in a class derived from one of those, including methods defined under such a name."""
    tree = ast.parse(source)
    def module(node) -> str:
        return (node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name

    sanic = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, (ast.Import, ast.ImportFrom)) and module(node).split(".")[0] == "sanic"
             for alias in node.names}

    def private(name: str) -> bool:
        return name.startswith("_") and not name.endswith("__")

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr) and isinstance(node.value, ast.Name) \
                and node.value.id in sanic:
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        if not (isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id in sanic
                                                       for b in node.bases)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and private(inner.name):
                found.append(f"line {inner.lineno}: def {node.name}.{inner.name}")
            if isinstance(inner, ast.Attribute) and private(inner.attr) and (
                    isinstance(inner.value, ast.Name) and inner.value.id in ("self", "cls", node.name)
                    or isinstance(inner.value, ast.Call) and getattr(inner.value.func, "id", "") == "super"):
                found.append(f"line {inner.lineno}: {ast.unparse(inner)}")
    return found


def test_no_private_sanic_attribute_in_the_gateway():
    """On a526509: HTTPResponse._dumps, def Answer._sanitize_header_value, self._time."""
    found = {path.name: uses for path in sorted((REPO / "gateway").glob("*.py"))
             if (uses := private_uses(path.read_text()))}
    assert found == {}
