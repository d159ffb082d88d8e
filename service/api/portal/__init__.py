"""The portal: server-rendered pages under /portal where a client's people see and fix their
tasks and webhooks (the contract's section "The portal").

- `session.py`: sign-in with an API key, sealed session cookies, CSRF, the security headers.
- `pages.py`: the routes, thin: each reads through the same store functions as the REST API.
- `timeline.py`, `charts.py`: what a page shows, arranged for its template.
- `templates/`, `static/`: Jinja2 (autoescaped) and one stylesheet; no script at all, so the
  Content-Security-Policy allows none.

How to extend: a new page is a route in pages.py rendering a template that extends base.html;
a form on it carries `{{ csrf_field() }}` and its POST route reads it with `read_form`.
"""
