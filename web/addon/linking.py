"""The web page's half of linking an add-on (Google) account to a web account.

The sidebar makes a one-time link for the verified Google identity and shows a code
beside it (``link_codes``); this page opens the link for a person signed in with their
password and binds the two only when they type that code and confirm (a CSRF-protected
POST). Either proof alone is not enough, and e-mail addresses are never compared.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from sheets_sync.errors import InvalidInput
from sheets_sync.store import identities

from ..users import current_db_user, db_session, write_session
from .link_codes import code_matches

WRONG_CODE = (
    "That code does not match the one in the sidebar, so this link no longer works. "
    "Make a new one in the sidebar (Link to a web account) and type the code shown there."
)


class LinkForm(FlaskForm):
    code = StringField("Code shown in the sidebar", validators=[DataRequired(), Length(max=20)])

bp = Blueprint("addon_link", __name__)


@bp.route("/link-google/<token>", methods=["GET", "POST"])
@login_required
def link_google(token: str) -> Any:
    form = LinkForm()
    if request.method == "POST" and form.validate_on_submit():
        if not code_matches(token, form.code.data or ""):
            # One try per link: spent for good (its own unit, committed), so a code
            # cannot be guessed by trying again.
            with write_session() as s:
                identities.void_link_token(s, token)
            return _refused(WRONG_CODE)
        try:
            with write_session() as s:
                identity = identities.redeem_link_token(s, token, current_db_user(s))
                email = identity.email
        except InvalidInput as exc:
            return _refused(exc.message)
        flash(
            f"Linked to the Google account {email}: connections made in the spreadsheet "
            "sidebar are listed here, and yours show in the sidebar of their spreadsheet.",
            "success",
        )
        return redirect(url_for("pages.dashboard"))
    with db_session() as s:
        try:
            offer = identities.link_offer(s, token, current_db_user(s))
        except InvalidInput as exc:
            return _refused(exc.message)
    status = 400 if request.method == "POST" else 200
    return render_template("link_google.html", offer=offer, form=form, token=token), status


def _refused(message: str) -> Any:
    return render_template("error.html", title="Link not valid", message=message), 400
