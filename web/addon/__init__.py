"""The Google Sheets add-on (HTTP runtime), served by the same Flask app.

``routes``: the endpoints Google calls (``/addon/…``, off unless configured); ``tokens``:
Google ID-token checks; ``events``: reading Google's event object; ``cards``: the card
JSON; ``views``: a connection as the sidebar shows it; ``linking``: the web page's half of
linking a Google account to a web account.
"""
