"""The pages for people: staff sign-in, the department desk, the reviewers' queue, the
supervisor dashboard and the public results. Server-rendered HTML (FastAPI + Jinja2), every
asset served by ratebot; the pages call the same functions as the JSON API."""
