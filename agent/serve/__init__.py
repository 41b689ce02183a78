"""`harmonygraph serve`: agents behind an OpenAI Responses-compatible endpoint, and the
dashboard (runs, their timelines, the survey pipeline's reports) on the same app.

    from harmonygraph.serve import ServeConfig, ServedAgent, create_app
    app = create_app(ServeConfig(agents=[ServedAgent("helper", agent)], database_url=url))

See README's "Serve" section; errors are in `harmonygraph.serve.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmonygraph.lazy import lazy_exports

if TYPE_CHECKING:
    from harmonygraph.serve.app import ServeConfig, create_app
    from harmonygraph.serve.server import ServerThread
    from harmonygraph.serve.service import ServedAgent

__all__ = ["ServeConfig", "ServedAgent", "ServerThread", "create_app"]

_LAZY = {
    "ServeConfig": "harmonygraph.serve.app",
    "create_app": "harmonygraph.serve.app",
    "ServerThread": "harmonygraph.serve.server",
    "ServedAgent": "harmonygraph.serve.service",
}

__getattr__ = lazy_exports(__name__, _LAZY)
