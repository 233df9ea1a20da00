"""Annotation names rcaflow itself fills in on an AlertEvent, shared by the producers and the policies."""

from __future__ import annotations

from typing import Final

#: The source's link to the rule (Alertmanager's ``generatorURL``, its default mail's "Source" link, vmalert's
#: ``-external.alert.source``); ``policies.alert_expression`` reads the rule's PromQL from it. Untrusted text.
GENERATOR_URL: Final = "generatorURL"
