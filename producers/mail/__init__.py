"""Mail parsing: RFC 822 bytes to AlertEvents through data-driven templates."""

from producers.mail.errors import MailParseError
from producers.mail.parse import ParsedMail, ParseLimits, load_templates, parse_mail
from producers.mail.registry import Template, TemplateConfigError, TemplateRegistry, bundled_templates_dir

__all__ = [
    "MailParseError",
    "ParseLimits",
    "ParsedMail",
    "Template",
    "TemplateConfigError",
    "TemplateRegistry",
    "bundled_templates_dir",
    "load_templates",
    "parse_mail",
]
