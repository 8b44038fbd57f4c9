"""One writer per state: only generations/lifecycle.py changes ``Generation.status`` (and the
transitions that overflowed its size limit into a module of their own, each named in OVERFLOW_OWNERS).

Every Python file of the project is parsed, not imported: the apps, ``bench/`` and ``scripts/``;
not ``tests/`` (fixtures set up rows in any state) nor migrations. A file writes the column when
it has any of:

- ``.update(status=...)``, ``.update(**{"status": ...})``, ``.update_or_create(...)`` with a status
  in ``defaults``, or ``.bulk_update(..., ["status", ...])`` on a chain that names a generation
  (``Generation.objects...``, a ``generation``/``generations`` variable) or with a
  ``GenerationStatus`` value;
- an assignment to ``<something>.status`` in a module that imports ``generations.models``, or
  with a ``GenerationStatus`` value anywhere (an in-memory status that a later ``save()`` writes);
- a ``status=GenerationStatus.X`` keyword or a ``{"status": GenerationStatus.X}`` entry passed to
  anything but a read (``filter``, ``exclude``, ``get``, ``Q``, ...) or a creation: that is how a
  helper forwards a status to an ``update(**fields)`` of its own;
- SQL text that UPDATEs a table and SETs ``status`` (hand-written statements in ``core/sql.py``
  style), in any file.

Creating a row is not a change of status: ``Generation(status=...)``, ``objects.create(...)``,
``bulk_create`` and the submission's hand-written INSERT (``core.sql.insert``, the tuned fast path
of bench/queue.py) give a new row its first status, which admission decided (pending or queued).
Those stay with the submission service, so the fast path keeps its one INSERT; a test below pins
that the INSERT carries no UPDATE. Other models' ``status`` columns (webhook deliveries, reports)
are not this rule's business: their values are not ``GenerationStatus`` members and their chains
do not name a generation.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OWNER = Path("generations/lifecycle.py")
# The lifecycle's transitions that did not fit in its 400 lines: one module each, named here.
OVERFLOW_OWNERS = {Path("generations/lifecycle_preemption.py"), Path("generations/lifecycle_batch.py")}
SKIPPED_DIRS = {"tests", "migrations", ".venv", "var", "node_modules", "static", "staticfiles", "sdk"}

# Calls that read rows or build a new one: a status keyword there is a condition or a first value.
READS = {
    "filter",
    "exclude",
    "get",
    "get_or_create",
    "first",
    "last",
    "count",
    "exists",
    "Q",
    "create",
    "Generation",
    "values",
    "values_list",
    "annotate",
    "aggregate",
    "order_by",
}
UPDATE_SQL = re.compile(r"\bUPDATE\b.+\bSET\b(?:(?!\bWHERE\b).)*\bstatus\b", re.IGNORECASE | re.DOTALL)


def python_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if SKIPPED_DIRS.isdisjoint(relative.parts):
            yield relative


def dotted(node: ast.AST) -> str:
    """The source of an expression, for name checks (``Generation.objects.filter(pk=1).update``)."""
    return ast.unparse(node)


def names_generation_status(node: ast.AST) -> bool:
    return "GenerationStatus" in dotted(node)


def names_a_generation(chain: str) -> bool:
    return "generation" in chain.lower()


def status_in_dict(node: ast.AST) -> ast.AST | None:
    if isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "status":
                return value
    return None


def call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def imports_generation_models(tree: ast.AST) -> bool:
    return any(
        isinstance(node, ast.ImportFrom) and node.module == "generations.models" for node in ast.walk(tree)
    )


def sql_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def status_writes(source: str) -> list[tuple[int, str]]:
    """(line, what) for every write of a generation's status that the source contains."""
    tree = ast.parse(source)
    aware = imports_generation_models(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = call_name(node)
            chain = dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            spread = [status_in_dict(k.value) for k in node.keywords if k.arg is None]
            if name in {"update", "update_or_create", "bulk_update"}:
                defaults = keywords.get("defaults")
                values: list[ast.AST | None] = [keywords.get("status"), *spread]
                values.append(status_in_dict(defaults) if defaults else None)
                if name == "bulk_update":
                    values += [a for a in node.args[1:] if "'status'" in dotted(a)]
                    values += [v for k, v in keywords.items() if k == "fields" and "'status'" in dotted(v)]
                for value in filter(None, values):
                    if names_a_generation(chain) or names_generation_status(value):
                        found.append((node.lineno, f"{chain}(status=...)"))
            elif name not in READS:
                for passed in [keywords.get("status"), *spread]:
                    if passed is not None and names_generation_status(passed):
                        found.append((node.lineno, f"{chain}(status={dotted(passed)}) passes a status on"))
        elif isinstance(node, ast.Dict):
            entry = status_in_dict(node)
            if entry is not None and names_generation_status(entry):
                found.append((node.lineno, f'{{"status": {dotted(entry)}}}'))
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            flat = [t for target in targets for t in ast.walk(target)]
            for target in flat:
                if isinstance(target, ast.Attribute) and target.attr == "status":
                    assigned = node.value
                    if aware or (assigned is not None and names_generation_status(assigned)):
                        found.append((node.lineno, f"{dotted(target)} = ..."))
        text = sql_text(node)
        if text is not None and UPDATE_SQL.search(text):
            found.append((getattr(node, "lineno", 0), f"SQL that sets status: {text[:60]!r}"))
    return sorted(set(found))


def test_only_the_lifecycle_writes_a_generations_status() -> None:
    offenders = [
        f"{path}:{line}: {what}"
        for path in python_files()
        if path != OWNER and path not in OVERFLOW_OWNERS
        for line, what in status_writes((ROOT / path).read_text())
    ]
    assert not offenders, (
        "Generation.status is written outside generations/lifecycle.py; add a transition there "
        "and call it (CONVENTIONS.md 11):\n" + "\n".join(offenders)
    )


def test_the_lifecycle_is_where_the_writes_are() -> None:
    """The scan sees the owner's writes: a scan that found nothing anywhere would prove nothing."""
    writes = status_writes((ROOT / OWNER).read_text())
    assert len(writes) >= 8, writes
    for owner in OVERFLOW_OWNERS:
        assert status_writes((ROOT / owner).read_text()), f"{owner} writes no status: drop it from the owners"


@pytest.mark.parametrize(
    "source",
    [
        "Generation.objects.filter(pk=1).update(status=GenerationStatus.FAILED)",
        "Generation.objects.filter(pk=1).update(status='failed')",
        "generation_rows.update(status=new)",
        "Generation.objects.filter(pk=1).update(**{'status': 'queued'})",
        "Generation.objects.bulk_update(rows, ['status', 'step'])",
        "Generation.objects.update_or_create(pk=1, defaults={'status': GenerationStatus.QUEUED})",
        "take_over(generation, status=GenerationStatus.QUEUED, worker_name='')",
        "fields = {'status': GenerationStatus.FAILED}",
        "from generations.models import Generation\ngeneration.status = 'failed'\ngeneration.save()",
        "job.status, job.step = GenerationStatus.RUNNING, 0",
        "sql = 'UPDATE generations_generation SET step = 0, status = %s WHERE id = %s'",
        "sql = f'UPDATE {table} SET status = %s WHERE id = %s'",
    ],
)
def test_the_scan_catches_each_way_of_writing_the_column(source: str) -> None:
    assert status_writes(source), source


@pytest.mark.parametrize(
    "source",
    [
        "Generation.objects.filter(status=GenerationStatus.QUEUED).count()",
        "Generation(user=user, status=GenerationStatus.QUEUED)",
        "Generation.objects.create(user=user, status=GenerationStatus.PENDING)",
        "sql = f'INSERT INTO {table} ({names}) VALUES ({marks})'",
        "sql = 'SELECT status, COUNT(*) FROM t WHERE status IN (%s) GROUP BY status'",
        "WebhookDelivery.objects.filter(pk=1).update(status=DeliveryStatus.SUCCEEDED)",
        "queryset.update(status=ReportStatus.RESOLVED)",
        "fields = {'status': DeliveryStatus.FAILED}",
        "body = {'status': generation.status}",
        "Generation.objects.filter(pk=1).update(step=3, total_steps=4)",
    ],
)
def test_the_scan_leaves_reads_creations_and_other_models_alone(source: str) -> None:
    assert not status_writes(source), source


def test_the_submission_fast_path_creates_and_never_updates() -> None:
    """The hand-written statements of the submission create the row; none of them changes one."""
    from core import sql
    from generations.models import Generation

    assert sql.insert_sql(Generation).startswith("INSERT INTO")
    assert not UPDATE_SQL.search(sql.insert_sql(Generation))


def test_staff_cannot_change_a_status_in_the_admin_form() -> None:
    """The admin's change form would save() a new status past the lifecycle."""
    from django.contrib import admin

    from generations.models import Generation

    assert "status" in admin.site._registry[Generation].readonly_fields
