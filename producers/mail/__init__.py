"""Mail parsing: RFC 822 bytes to AlertEvents through data-driven templates."""

from producers.mail.errors import MailParseError
from producers.mail.not_alert import NotAnAlertError
from producers.mail.parse import ParsedMail, ParseLimits, load_templates, parse_mail
from producers.mail.registry import Template, TemplateConfigError, TemplateRegistry, bundled_templates_dir
from producers.mail.row_check import RejectedRow, RejectedRowsError

__all__ = [
    "MailParseError",
    "NotAnAlertError",
    "ParseLimits",
    "ParsedMail",
    "RejectedRow",
    "RejectedRowsError",
    "Template",
    "TemplateConfigError",
    "TemplateRegistry",
    "bundled_templates_dir",
    "load_templates",
    "parse_mail",
]
