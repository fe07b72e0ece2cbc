"""The web page's half of linking an add-on (Google) account to a web account.

The sidebar makes a one-time link for the verified Google identity; this page opens it
for a person signed in with their password and binds the two only when they confirm
(a CSRF-protected POST). Either proof alone is not enough, and e-mail addresses are
never compared.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from sheets_sync.errors import InvalidInput
from sheets_sync.store import identities

from ..forms import CsrfForm
from ..users import current_db_user, db_session, write_session

bp = Blueprint("addon_link", __name__)


@bp.route("/link-google/<token>", methods=["GET", "POST"])
@login_required
def link_google(token: str) -> Any:
    form = CsrfForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            with write_session() as s:
                identity = identities.redeem_link_token(s, token, current_db_user(s))
                email = identity.email
        except InvalidInput as exc:
            return render_template("error.html", title="Link not valid", message=exc.message), 400
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
            return render_template("error.html", title="Link not valid", message=exc.message), 400
    return render_template("link_google.html", offer=offer, form=form, token=token)
