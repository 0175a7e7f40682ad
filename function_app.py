"""The Azure Functions app: one Blueprint per pipeline stage, nothing else.

Importing this module must never fail for want of Azure settings: every connection is
made lazily by `shared.bootstrap` on first use.
"""

import azure.functions as func

from changefeed.blueprint import bp as changefeed_bp
from ingest.blueprint import bp as ingest_bp
from ingest.segment_blueprint import bp as segment_bp
from privacy.blueprint import bp as privacy_bp
from process.blueprint import bp as process_bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(ingest_bp)
app.register_functions(segment_bp)
app.register_functions(process_bp)
app.register_functions(changefeed_bp)
app.register_functions(privacy_bp)
