"""The portal: server-rendered pages under /portal where a client's people see and fix their
tasks and webhooks (the contract's section "The portal").

- `session.py`: sign-in with an API key, sealed session cookies, CSRF, the security headers.
- `pages.py` (sign-in, overview), `task_pages.py`, `job_pages.py` (check jobs),
  `webhook_pages.py`: the routes, thin: each calls the same service.features function as the REST
  API; `rendering.py` renders them.
- `timeline.py`, `charts.py`: what a page shows, arranged for its template.
- `templates/`, `static/`: Jinja2 (autoescaped) and one stylesheet; no script at all, so the
  Content-Security-Policy allows none.

How to extend: a new page is a route in the pages module of its feature, calling a
service.features function and rendering a template that extends base.html; a form on it carries
`{{ csrf_field() }}` and its POST route reads it with `read_form` (an upload, multipart, with
`read_upload`).
"""
