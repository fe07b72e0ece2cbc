"""The Google Sheets add-on (HTTP runtime), served by the same Flask app.

``guard``: what every request goes through (Google's ID tokens, via ``tokens``; the
event, via ``events``); ``routes``: the homepage, status, Refresh now, access and linking
endpoints; ``connect``: the connect form and the owner's changes; ``form``: the form's
defaults; ``cards``: the card JSON; ``views``: a connection as the sidebar shows it;
``linking`` and ``link_codes``: the web page's half of linking a Google account to a web
account.
"""
