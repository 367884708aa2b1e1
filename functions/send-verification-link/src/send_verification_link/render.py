"""The email as HTML (an MJML template filled by Jinja2, compiled by mjml-python) and text."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from mjml import mjml2html

from send_verification_link.links import EmailContent
from send_verification_link.site import Site

_ENV = Environment(
    loader=PackageLoader("send_verification_link", "templates"),
    autoescape=select_autoescape(enabled_extensions=("mjml", "html"), default=True),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)
_TEXT_ENV = Environment(
    loader=PackageLoader("send_verification_link", "templates"),
    autoescape=False,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Rendered:
    """The two bodies of the email."""

    html: str
    text: str

    def bodies(self) -> dict[str, str]:
        """``{"html": ..., "text": ...}``, as keyword arguments of ``mailer.Message.build``."""
        return {"html": self.html, "text": self.text}


def template_values(content: EmailContent, site: Site) -> dict[str, object]:
    """The template variables (the reference's ``generate()`` options)."""
    return {
        "title": content.subject,
        "message": content.subject,
        "sub_message": content.sub_message,
        "link": content.link,
        "link_text": content.link_text,
        "body_bg": "white",
        "header_bg": "white",
        "message_bg": "white",
        "text_colour": "#414141",
        "button_bg": site.primary_colour,
        "button_text": "white",
        "company_name": site.company_name,
        "support_email": site.support_email,
        "website": site.website,
        "logo": site.logo,
    }


def render(content: EmailContent, site: Site) -> Rendered:
    """The HTML and plain-text bodies; every value is escaped for its context."""
    values = template_values(content, site)
    mjml_source = _ENV.get_template("email.mjml").render(values)
    text = _TEXT_ENV.get_template("email.txt").render(values)
    return Rendered(html=mjml2html(mjml_source), text=text)
