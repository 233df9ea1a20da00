"""Mail templates as data: YAML entries that tell a small set of engines where the alerts are.

A new customer layout is a new YAML entry (docs/mail-templates.md), not new
code. ``_defaults.yaml`` holds what every template shares (field synonyms,
section markers, severity words, component rules); a template adds to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from producers.errors import ProducerError
from schemas.records import AlertStatus

EngineName = Literal["html_table", "kv_lines"]


class TemplateConfigError(ProducerError, ValueError):
    """A template file is malformed; raised at load time, so a bad file never reaches a mail.

    Still a ``ValueError`` for callers that caught it as one before it joined the tree.
    """

    retriable = False


class ComponentRule(BaseModel):
    """``component`` applies when every given field matches its regex (``any``: job/workload/pod/...)."""

    model_config = ConfigDict(extra="forbid")

    component: str
    alert: str | None = None
    any: str | None = None


class LineField(BaseModel):
    """A field read by regex from a line inside an alert block (group ``value``)."""

    model_config = ConfigDict(extra="forbid")

    field: str
    pattern: str


class DetectSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: list[str] = Field(default_factory=list)
    body: list[str] = Field(default_factory=list)


class TemplateSpec(BaseModel):
    """One YAML entry under ``templates:``; unknown keys are an error, so typos surface at load."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    version: int = 1
    engine: EngineName
    priority: int = 100
    description: str = ""
    detect: DetectSpec = Field(default_factory=DetectSpec)
    fields: dict[str, list[str]] = Field(default_factory=dict)
    sections: dict[AlertStatus, list[str]] = Field(default_factory=dict)
    severity_map: dict[str, str] = Field(default_factory=dict)
    components: list[ComponentRule] = Field(default_factory=list)
    timezone: str | None = None
    default_status: AlertStatus = AlertStatus.FIRING
    # html_table
    min_header_fields: int = 2
    # kv_lines
    prefer: Literal["html", "text"] = "html"
    record_start: list[str] = Field(default_factory=list)
    annotations_start: list[str] = Field(default_factory=list)
    labels_start: list[str] = Field(default_factory=list)
    record_end: list[str] = Field(default_factory=list)
    kv_pattern: str = r"^\s*(?P<key>[^=:：\t]{1,64}?)\s*(?:=|:|：|\t)\s*(?P<value>.*?)\s*$"
    line_fields: list[LineField] = Field(default_factory=list)
    #: kv_lines, HTML: annotation name -> regex on a link's text; that link's href is kept as the annotation
    #: (Alertmanager's "Source" link is the rule's generatorURL, which carries its expression).
    links: dict[str, str] = Field(default_factory=dict)


class DefaultsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: dict[str, list[str]] = Field(default_factory=dict)
    sections: dict[AlertStatus, list[str]] = Field(default_factory=dict)
    severity_map: dict[str, str] = Field(default_factory=dict)
    components: list[ComponentRule] = Field(default_factory=list)
    workload_from: list[str] = Field(default_factory=list)
    timezone: str = "Asia/Shanghai"


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: DefaultsSpec | None = None
    templates: list[TemplateSpec] = Field(default_factory=list)


_KEY_NOISE = re.compile(r"[\s:：_\-/()（）]+")


def normalize_key(text: str) -> str:
    """Header/key text compared loosely: case, blanks and trailing colons do not matter."""
    return _KEY_NOISE.sub("", text).lower()


@dataclass(frozen=True)
class Template:
    """A template compiled for use: regexes compiled, synonyms inverted, defaults merged."""

    id: str
    version: int
    engine: EngineName
    priority: int
    subject_res: tuple[re.Pattern[str], ...]
    body_res: tuple[re.Pattern[str], ...]
    #: normalized header/key text -> canonical field name
    synonyms: Mapping[str, str]
    sections: tuple[tuple[AlertStatus, re.Pattern[str]], ...]
    severity_map: Mapping[str, str]
    components: tuple[tuple[str, re.Pattern[str] | None, re.Pattern[str] | None], ...]
    workload_from: tuple[str, ...]
    zone: ZoneInfo
    default_status: AlertStatus
    min_header_fields: int
    prefer: Literal["html", "text"]
    record_start: tuple[re.Pattern[str], ...]
    annotations_start: tuple[re.Pattern[str], ...]
    labels_start: tuple[re.Pattern[str], ...]
    record_end: tuple[re.Pattern[str], ...]
    kv_pattern: re.Pattern[str]
    line_fields: tuple[tuple[str, re.Pattern[str]], ...] = ()
    links: tuple[tuple[str, re.Pattern[str]], ...] = ()
    #: (alert, label haystack) -> component; the rules are pure, so their answers can be kept.
    component_cache: dict[tuple[str, str], str | None] = field(default_factory=dict, compare=False, repr=False)

    @property
    def parser_id(self) -> str:
        return f"{self.id}@{self.version}"

    def section_of(self, text: str) -> AlertStatus | None:
        """Status named by a short heading-like text ("告警中", "[2] Resolved"), if any."""
        if len(text) > 60:
            return None
        for status, rx in self.sections:
            if rx.search(text):
                return status
        return None


@dataclass(frozen=True)
class TemplateRegistry:
    """Templates in the order they are tried (priority, then file order)."""

    templates: tuple[Template, ...] = field(default_factory=tuple)

    def __iter__(self) -> Any:
        return iter(self.templates)

    def __len__(self) -> int:
        return len(self.templates)

    def get(self, template_id: str) -> Template:
        for t in self.templates:
            if t.id == template_id:
                return t
        raise KeyError(template_id)


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise TemplateConfigError(f"{where}: bad regex {pattern!r}: {exc}") from exc


def _compile_all(patterns: Iterable[str], where: str) -> tuple[re.Pattern[str], ...]:
    return tuple(_compile(p, where) for p in patterns)


def _build(spec: TemplateSpec, defaults: DefaultsSpec, where: str) -> Template:
    fields: dict[str, list[str]] = {k: list(v) for k, v in defaults.fields.items()}
    for name, words in spec.fields.items():
        fields.setdefault(name, []).extend(words)
    synonyms: dict[str, str] = {}
    for canonical, words in fields.items():
        for word in [canonical, *words]:
            synonyms.setdefault(normalize_key(word), canonical)
    sections: list[tuple[AlertStatus, re.Pattern[str]]] = []
    for source in (spec.sections, defaults.sections):
        for status, patterns in source.items():
            sections.extend((status, rx) for rx in _compile_all(patterns, f"{where} sections"))
    severity = {normalize_key(k): v for k, v in defaults.severity_map.items()}
    severity.update({normalize_key(k): v for k, v in spec.severity_map.items()})
    components = tuple(
        (
            rule.component,
            _compile(rule.alert, f"{where} components") if rule.alert else None,
            _compile(rule.any, f"{where} components") if rule.any else None,
        )
        for rule in [*spec.components, *defaults.components]
    )
    zone_name = spec.timezone or defaults.timezone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TemplateConfigError(f"{where}: unknown timezone {zone_name!r}") from exc
    return Template(
        id=spec.id,
        version=spec.version,
        engine=spec.engine,
        priority=spec.priority,
        subject_res=_compile_all(spec.detect.subject, f"{where} detect.subject"),
        body_res=_compile_all(spec.detect.body, f"{where} detect.body"),
        synonyms=synonyms,
        sections=tuple(sections),
        severity_map=severity,
        components=components,
        workload_from=tuple(defaults.workload_from),
        zone=zone,
        default_status=spec.default_status,
        min_header_fields=spec.min_header_fields,
        prefer=spec.prefer,
        record_start=_compile_all(spec.record_start, f"{where} record_start"),
        annotations_start=_compile_all(spec.annotations_start, f"{where} annotations_start"),
        labels_start=_compile_all(spec.labels_start, f"{where} labels_start"),
        record_end=_compile_all(spec.record_end, f"{where} record_end"),
        kv_pattern=_compile(spec.kv_pattern, f"{where} kv_pattern"),
        line_fields=tuple((lf.field, _compile(lf.pattern, f"{where} line_fields")) for lf in spec.line_fields),
        links=tuple((name, _compile(rx, f"{where} links")) for name, rx in spec.links.items()),
    )


def _yaml_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


def bundled_templates_dir() -> Path:
    """The folder of the templates shipped with rcaflow (also the home of ``_defaults.yaml``)."""
    return Path(str(resources.files("producers.mail") / "templates"))


def load_templates(paths: Iterable[Path] | None = None) -> TemplateRegistry:
    """Load template YAML files (or folders of them); default: the bundled templates.

    Given paths are loaded on top of the bundled ``_defaults.yaml`` unless they
    bring their own ``defaults:``; a later template with an existing id replaces it.
    """
    bundled = bundled_templates_dir()
    files = _yaml_files([bundled] if paths is None else list(paths))
    parsed: list[tuple[Path, RegistryFile]] = []
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            parsed.append((path, RegistryFile.model_validate(data)))
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise TemplateConfigError(f"{path}: {exc}") from exc
    defaults = next((f.defaults for _, f in parsed if f.defaults is not None), None)
    if defaults is None:
        base = RegistryFile.model_validate(yaml.safe_load((bundled / "_defaults.yaml").read_text(encoding="utf-8")))
        defaults = base.defaults or DefaultsSpec()
    by_id: dict[str, Template] = {}
    order: list[str] = []
    for path, reg in parsed:
        for spec in reg.templates:
            if spec.id not in by_id:
                order.append(spec.id)
            by_id[spec.id] = _build(spec, defaults, f"{path.name}:{spec.id}")
    ranked = sorted(order, key=lambda i: (by_id[i].priority, order.index(i)))
    return TemplateRegistry(tuple(by_id[i] for i in ranked))
