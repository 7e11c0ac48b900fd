"""The review web app for clinicians (``carealign review serve``): server-rendered pages on the
project's store, with accounts, CSRF-protected forms and N independent reviewers per item.

    configuration.py   the ``[review]`` settings (imported by carealign.settings; no web imports)
    auth.py            passwords (argon2), sessions (signed cookies), CSRF, the login dependency
    app.py             ``create_app``: the FastAPI app, its routes and error pages
    queues.py          the three queues: what a page shows and how a decision is recorded
    progress.py        progress and agreement (shared by the admin page and ``review report``)

Importing this package needs no web dependency; ``carealign.web.app`` needs the ``web`` extra.
"""
