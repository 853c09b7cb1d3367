"""Datasette plugin of the archive: errors answered without dumping locals (they hold PHI search terms).

Datasette's own error handler prints a rich traceback with every local variable to the server's log when
rich is installed; ours answers the same JSON / HTML error and logs one line.
"""

from __future__ import annotations

import logging
from typing import Any

from datasette import Response, hookimpl
from datasette.utils.asgi import Base400
from datasette.views.base import DatasetteError
from markupsafe import Markup

log = logging.getLogger("archiver.serve")


@hookimpl
def handle_exception(datasette: Any, request: Any, exception: Exception) -> Any:
    async def inner() -> Response:
        title = None
        info: dict[str, Any] = {}
        if isinstance(exception, Base400):
            status, message = exception.status, exception.args[0]
        elif isinstance(exception, DatasetteError):
            status, info, message, title = (
                exception.status,
                dict(exception.error_dict),
                exception.message,
                exception.title,
            )
            if exception.message_is_html:
                message = Markup(message)
        else:
            status, message = 500, "Internal error"
            log.error("error serving %s: %s", request.path, type(exception).__name__)
        info.update({"ok": False, "error": message, "status": status, "title": title})
        if request.path.endswith(".json"):
            return Response.json(info, status=status)
        template = datasette.jinja_env.select_template([f"{status}.html", "error.html"])
        context = dict(info, urls=datasette.urls, app_css_hash=datasette.app_css_hash(), menu_links=lambda: [])
        return Response.html(await template.render_async(context), status=status)

    return inner
