"""Runbooks per alert class: the policy file's facts plus hand-written guidance, in English and Chinese.

The policy file is the source of truth for what rcaflow reads and may do; a runbook that restated it
by hand would drift. So docs/runbooks/<class>.md is generated: evidence (with the exact queries),
thresholds, diagnoses, actions, risk, approval and rollback come from remediation_policies.yaml;
what the alert means, what to look at first and what to do per diagnosis come from
policies/runbook_guidance/<class>.yaml, which must cover every diagnosis of the class (checked here and in
tests). ``python -m policies.runbooks`` (``make runbooks``) rewrites the pages; ``--check`` fails
when a page is stale.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies.errors import PolicyError
from policies.loader import DEFAULT_POLICY_FILE, PolicySet, load_policies
from policies.model import ActionSpec, ClassPolicy, ParamSpec

GUIDANCE_DIR: Final = Path(__file__).with_name("runbook_guidance")
DOCS_DIR: Final = Path(__file__).resolve().parents[1] / "docs" / "runbooks"
#: Where a runbook is found when no deployment URL is configured: the page in this repository.
REPO_RUNBOOK_PATH: Final = "docs/runbooks/{class_id}.md"


class Bilingual(BaseModel):
    """One text in both languages our users read alerts in."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)


class BilingualList(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    en: list[str] = Field(min_length=1)
    zh: list[str] = Field(min_length=1)


class Guidance(BaseModel):
    """The hand-written part of one class's runbook (policies/runbook_guidance/<class>.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    meaning: Bilingual
    first_look: BilingualList
    #: What to do per diagnosis id of the class; every diagnosis must have an entry.
    causes: dict[str, Bilingual]
    escalate: Bilingual


class RunbookError(PolicyError):
    """A runbook's guidance is missing, malformed or disagrees with the policy file."""

    def __init__(self, class_id: str, message: str, *, file: str | None = None) -> None:
        super().__init__(f"runbook {class_id}: {message}", file=file)
        self.class_id = class_id


def guidance_path(class_id: str, directory: Path = GUIDANCE_DIR) -> Path:
    return directory / f"{class_id}.yaml"


def load_guidance(cls: ClassPolicy, directory: Path = GUIDANCE_DIR) -> Guidance:
    """The class's guidance, checked against the class: no diagnosis without advice, no stray ids."""
    path = guidance_path(cls.id, directory)
    if not path.is_file():
        raise RunbookError(cls.id, f"{path} is missing: every class in the policy file needs its guidance")
    try:
        guidance = Guidance.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as exc:
        raise RunbookError(cls.id, f"{path}: {exc}") from exc
    diagnoses = {d.id for d in cls.diagnoses}
    missing = sorted(diagnoses - guidance.causes.keys())
    stray = sorted(guidance.causes.keys() - diagnoses)
    if missing:
        raise RunbookError(cls.id, f"{path.name} has no advice for diagnoses {missing}")
    if stray:
        raise RunbookError(cls.id, f"{path.name} advises on diagnoses the policy does not have: {stray}")
    return guidance


def runbook_link(class_id: str, base_url: str = "") -> str:
    """The link a notification and the LLM prompt carry: the deployment's runbook site, or the repo page."""
    if base_url:
        return f"{base_url.rstrip('/')}/{class_id}.md"
    return REPO_RUNBOOK_PATH.format(class_id=class_id)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _code(text: str) -> str:
    """Inline code that survives backticks and pipes inside PromQL."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{_cell(text)}{fence}"


def _param(name: str, spec: ParamSpec) -> str:
    if spec.value is not None:
        return f"{name}={spec.value}"
    if spec.template is not None:
        return f"{name}={spec.template}"
    if spec.allowed is not None:
        default = f", default {spec.default}" if spec.default else ""
        return f"{name}∈{{{', '.join(spec.allowed)}}}{default}"
    if spec.pattern is not None:
        return f"{name}~/{spec.pattern}/"
    return name


def _action_row(action: ActionSpec) -> str:
    params = ", ".join(_param(n, s) for n, s in action.params.items())
    pre = "; ".join([*action.preconditions, *(f"not for `{d}`" for d in action.not_for)]) or "—"
    minutes = int(action.cooldown.total_seconds() // 60)
    return (
        f"| `{action.name}` | `{action.tool}.{action.operation}` | {action.risk.value} | {action.approval.value} "
        f"| {_code(params) if params else '—'} | {_cell(pre)} | {minutes} min | {_cell(action.description)} |"
    )


def render(cls: ClassPolicy, guidance: Guidance, policies: PolicySet) -> str:
    """The Markdown page for one class. Deterministic: the same inputs give the same bytes."""
    alerts = sorted({a for m in cls.match for a in m.alerts})
    dedup = policies.dedup_window(cls.id)
    lines: list[str] = [
        f"# {cls.title}",
        "",
        f"<!-- Generated by `make runbooks` from policies/remediation_policies.yaml and "
        f"policies/runbook_guidance/{cls.id}.yaml: edit those, not this page. -->",
        "",
        f"Class `{cls.id}` · alerts: {', '.join(f'`{a}`' for a in alerts) or 'matched by labels'} · "
        f"dedup window {int(dedup.total_seconds() // 60)} min",
        "",
        "## What the alert means · 告警含义",
        "",
        guidance.meaning.en.strip(),
        "",
        guidance.meaning.zh.strip(),
        "",
    ]
    if cls.description:
        lines += [f"> Policy: {cls.description.strip()}", ""]
    lines += ["## Look first · 先看什么", ""]
    lines += [f"{i}. {step}" for i, step in enumerate(guidance.first_look.en, 1)]
    lines += [""]
    lines += [f"{i}. {step}" for i, step in enumerate(guidance.first_look.zh, 1)]
    lines += ["", "## Evidence rcaflow reads · rcaflow 读取的证据", ""]
    if cls.evidence:
        lines += ["| id | tool | query | shows |", "|---|---|---|---|"]
        for step in cls.evidence:
            queries = [step.query, *(getattr(step, "alternatives", None) or [])]
            shown = " or ".join(_code(q) for q in queries)
            lines.append(f"| `{step.id}` | `{step.tool}.{step.operation}` | {shown} | {_cell(step.description)} |")
        lines += ["", "`${name}` is filled from the alert's labels after they pass their format checks; "
                  "PromQL values are escaped (docs/policies.md)."]
    else:
        lines.append("None: the class is diagnosed from the alert alone.")
    lines += ["", "## Thresholds · 阈值", ""]
    if cls.thresholds:
        lines += ["| id | expression | meaning |", "|---|---|---|"]
        lines += [f"| `{t.id}` | {_code(t.expr)} | {_cell(t.description)} |" for t in cls.thresholds]
        lines += ["", "A threshold whose series is missing is unknown, not false (docs/policies.md)."]
    else:
        lines.append("None.")
    lines += ["", "## Diagnoses and what to do · 诊断与处理", ""]
    for diag in cls.diagnoses:
        when = " and ".join(f"`{w}`" for w in diag.when) or "otherwise (the fallback)"
        advice = guidance.causes[diag.id]
        lines += [
            f"### `{diag.id}`: {diag.diagnosis}",
            "",
            f"When {when} · confidence {diag.confidence:.2f}",
            "",
            f"- Likely cause: {diag.cause.strip() or '—'}",
            f"- What to do: {advice.en.strip()}",
            f"- 处理建议：{advice.zh.strip()}",
            "",
        ]
    lines += ["## Actions · 处置动作", ""]
    if cls.actions:
        lines += [
            "| action | tool | risk | approval | parameters | preconditions | cooldown | what it does |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [_action_row(a) for a in cls.actions]
        lines += [
            "",
            "`approval: auto` runs without a human when the tenant allows it; `required` waits for an approver "
            "(Slack, DingTalk or a signed link); high-risk actions always wait (docs/approvals.md). "
            "自动（auto）动作在租户允许时直接执行；required 需要审批人批准；高风险动作始终需要审批。",
        ]
    else:
        lines.append("None: rcaflow only diagnoses this class.")
    lines += ["", "## Rollback · 回滚", ""]
    for action in cls.actions:
        lines.append(f"- `{action.name}`: {_cell(action.rollback or 'nothing to undo (read-only)')}")
    lines += [
        "",
        "## Escalate · 升级",
        "",
        guidance.escalate.en.strip(),
        "",
        guidance.escalate.zh.strip(),
        "",
        "## References · 参考",
        "",
    ]
    lines += [f"- <{url}>" for url in cls.runbooks]
    return "\n".join(lines).rstrip() + "\n"


def render_index(policies: PolicySet) -> str:
    lines = [
        "# Runbooks · 运维手册",
        "",
        "<!-- Generated by `make runbooks`: edit policies/remediation_policies.yaml and "
        "policies/runbook_guidance/. -->",
        "",
        "One page per alert class of policies/remediation_policies.yaml. Every notification and the LLM's "
        "prompt link the page of the incident's class. 每个告警类别一页；通知和 LLM 提示词都会附上对应链接。",
        "",
        "| class | title |",
        "|---|---|",
    ]
    lines += [f"| [`{c.id}`]({c.id}.md) | {_cell(c.spec.title)} |" for c in policies.classes]
    return "\n".join(lines) + "\n"


def pages(policies: PolicySet, guidance_dir: Path = GUIDANCE_DIR) -> dict[str, str]:
    """File name → content of every page, README.md included."""
    out = {"README.md": render_index(policies)}
    for compiled in policies.classes:
        spec = compiled.spec
        out[f"{spec.id}.md"] = render(spec, load_guidance(spec, guidance_dir), policies)
    return out


def stale(policies: PolicySet, docs_dir: Path = DOCS_DIR, guidance_dir: Path = GUIDANCE_DIR) -> list[str]:
    """Pages that differ from what the policy and guidance give, plus pages of classes that no longer exist."""
    wanted = pages(policies, guidance_dir)
    bad = [name for name, text in wanted.items() if _read(docs_dir / name) != text]
    extra = sorted(p.name for p in docs_dir.glob("*.md") if p.name not in wanted)
    return bad + extra


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.runbooks", description=__doc__)
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY_FILE)
    parser.add_argument("--out", type=Path, default=DOCS_DIR)
    parser.add_argument("--check", action="store_true", help="fail when a page is stale instead of writing")
    args = parser.parse_args(argv)
    policies = load_policies(args.policy)
    try:
        if args.check:
            bad = stale(policies, args.out)
            for name in bad:
                print(f"runbooks: {args.out / name} is stale: run `make runbooks`", file=sys.stderr)
            return 1 if bad else 0
        args.out.mkdir(parents=True, exist_ok=True)
        wanted = pages(policies)
    except RunbookError as exc:
        print(f"runbooks: {exc}", file=sys.stderr)
        return 2
    for old in args.out.glob("*.md"):
        if old.name not in wanted:
            old.unlink()
    for name, text in wanted.items():
        (args.out / name).write_text(text, encoding="utf-8")
    print(f"runbooks: wrote {len(wanted)} pages to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
