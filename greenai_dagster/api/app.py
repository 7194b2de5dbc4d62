"""The FastAPI app: routes only; the work is in `service` (plain functions).

Every route except /health (and the docs) asks for the `X-API-Key` header when a key is
configured, compared in constant time. Bodies are validated by pydantic (422 naming the field);
the project's errors are 400 with their code and remedy; unknown ids are 404.
"""

from __future__ import annotations

import hmac
import json
import os
import re
from dataclasses import dataclass, field
from importlib.resources import files

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from greenai_dagster.api import models, service
from greenai_dagster.core.errors import GreenAIError
from greenai_dagster.core.settings.config import config_error

API_KEY_HEADER = "X-API-Key"
ID = Path(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$", description="a job id or an experiment name")
EXPERIMENT_ID = Path(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$", description="an experiment name")
STRATEGY_ID = Path(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$", description="a frontier member's strategy_id")
ERRORS = {400: {"model": models.ErrorBody, "description": "E00x: the inputs cannot be used"},
          404: {"model": models.ErrorBody, "description": "unknown id"}}


@dataclass
class ApiSettings:
    api_key: str | None = None
    dagster_url: str = field(default_factory=lambda: os.environ.get("GREENAI_DAGSTER_URL",
                                                                    service.DEFAULT_DAGSTER_URL))


def _offline_docs(app: FastAPI) -> None:
    """/docs with Swagger UI's script and stylesheet served from the `fastapi-offline` package's static folder
    (Swagger UI 5, which reads OpenAPI 3.1): FastAPI's default page loads them from a CDN, which a machine
    without internet cannot reach (a blank page)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-assets", StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - API docs",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="")


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                          description="required when the server was started with an API key")

    def require_key(key: str | None = Security(header)) -> None:
        if key is None or not hmac.compare_digest(key.encode(), settings.api_key.encode()):
            raise HTTPException(status_code=401, detail=f"missing or wrong {API_KEY_HEADER} header",
                                headers={"WWW-Authenticate": "APIKey"})

    app = FastAPI(title="greenai-dagster", version="0.1.0", docs_url=None,
                  description="Agentic multi-objective LLM compression; jobs are Dagster runs. The seed's REST API.")
    _offline_docs(app)
    # the key's header is in the OpenAPI schema (and /docs' Authorize button) only when a key is required
    api = (APIRouter(dependencies=[Depends(require_key)], responses={401: {"model": models.ErrorBody}})
           if settings.api_key is not None else APIRouter())

    @app.exception_handler(GreenAIError)
    async def _project_error(_: Request, exc: GreenAIError):
        return JSONResponse(status_code=400, content={"detail": {"code": exc.code, "message": exc.message,
                                                                 "remedy": exc.remedy}})

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, exc: RequestValidationError):
        """FastAPI's 422 (every error, each naming its field), plus for POST /compress the first error as the
        project's E004 (`error`), worded as the CLI and the Launchpad word it: the body's checks are
        ExperimentConfig's (api/models.py is generated from it), so the message is the same whoever sent it."""
        reply = await request_validation_exception_handler(request, exc)
        errors = exc.errors()
        if request.url.path.rstrip("/").endswith("/compress") and errors and errors[0]["loc"][:1] == ("body",) \
                and errors[0]["type"] != "json_invalid":
            error = config_error(errors[0]["loc"][1:], errors[0]["msg"], models.REQUEST_REMEDY)
            content = {**json.loads(reply.body), "error": {"code": error.code, "message": error.message,
                                                           "remedy": error.remedy}}
            return JSONResponse(status_code=reply.status_code, content=content)
        return reply

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        """Starlette answers 405 with the methods of the first route whose path matched (`Allow: GET` for
        /jobs/{id}, which also takes DELETE): list every method any route serves at that path."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = {method.upper() for template, operations in app.openapi()["paths"].items()
                       if re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", template), request.url.path)
                       for method in operations}
            headers["Allow"] = ", ".join(sorted(allowed))
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=headers)

    for error, code in ((service.NotFound, 404), (service.Conflict, 409), (service.Unavailable, 503)):
        app.add_exception_handler(error, lambda _, exc, code=code: JSONResponse(status_code=code,
                                                                                 content={"detail": str(exc)}))

    @api.get("/", summary="API information")
    def info() -> dict:
        return {"name": "greenai-dagster", "version": app.version, "docs": "/docs", "openapi": "/openapi.json",
                "dagster_url": settings.dagster_url, "api_key_required": settings.api_key is not None,
                "endpoints": sorted(f"{method.upper()} {path}" for path, operations in app.openapi()["paths"].items()
                                    for method in operations)}

    @api.post("/compress", response_model=models.JobInfo, responses={**ERRORS, 409: {"model": models.ErrorBody},
                                                                     503: {"model": models.ErrorBody}},
              summary="Create a compression job (a Dagster run of launch_experiment)")
    def compress(body: models.CompressRequest):
        return service.compress(body, settings.dagster_url)

    @api.get("/jobs", response_model=models.JobList, summary="List the jobs (launch_experiment runs)")
    def jobs(limit: int = Query(100, ge=1, le=1000)):
        return service.jobs(limit)

    @api.get("/jobs/{job_id}", response_model=models.JobInfo, responses=ERRORS, summary="Job status")
    def job(job_id: str = ID):
        return service.job(job_id)

    @api.delete("/jobs/{job_id}", response_model=models.JobInfo, responses={**ERRORS, 409: {"model": models.ErrorBody},
                                                                            503: {"model": models.ErrorBody}},
                summary="Cancel a job: no new episode starts, its running Dagster runs are terminated")
    def cancel_job(job_id: str = ID):
        return service.cancel(job_id, settings.dagster_url)

    @api.get("/jobs/{job_id}/logs", response_model=models.JobLogs, responses=ERRORS,
             summary="The Dagster event log of every run of the job")
    def job_logs(job_id: str = ID, limit: int = Query(500, ge=1, le=10000)):
        return service.job_logs(job_id, limit)

    @api.get("/episodes/{job_id}", response_model=models.EpisodesReply, responses=ERRORS,
             summary="Episode history: strategy, reasoning, status and result of each episode")
    def episodes(job_id: str = ID):
        return service.episodes(job_id)

    @api.get("/experiments", response_model=models.ExperimentList, summary="List every experiment")
    def experiments():
        return service.experiments()

    @api.get("/experiments/{experiment_id}", responses=ERRORS,
             summary="Experiment detail: config, spec, final results, frontier and links")
    def experiment(experiment_id: str = EXPERIMENT_ID) -> dict:
        return service.experiment(experiment_id)

    @api.get("/experiments/{experiment_id}/chart", responses={**ERRORS, 200: {"content": {"text/html": {}}}},
             response_class=FileResponse, summary="The interactive Pareto chart (Plotly HTML)")
    def chart(experiment_id: str = EXPERIMENT_ID):
        return FileResponse(service.chart_file(experiment_id), media_type="text/html")

    @api.get("/experiments/{experiment_id}/solutions/{strategy_id}/download", response_class=FileResponse,
             responses={**ERRORS, 200: {"content": {"application/gzip": {}}}},
             summary="Download a Pareto solution's checkpoint as .tar.gz")
    def download(experiment_id: str = EXPERIMENT_ID, strategy_id: str = STRATEGY_ID):
        archive = service.pack_solution(experiment_id, strategy_id)
        return FileResponse(archive, media_type="application/gzip", filename=f"{strategy_id}.tar.gz",
                            background=BackgroundTask(archive.unlink, missing_ok=True))

    @api.post("/spec/infer", responses=ERRORS, summary="Infer a model's spec (the seed's model_spec.json)")
    def spec_infer(body: models.SpecRequest) -> dict:
        return service.spec_infer(body.model_name)

    @api.get("/pareto/{job_id}", response_model=models.ParetoReply, responses=ERRORS,
             summary="The Pareto frontier (the seed's pareto_frontier.json)")
    def pareto(job_id: str = ID):
        return service.pareto(job_id)

    @api.get("/methods", summary="Compression methods and their parameters")
    def methods() -> dict:
        return service.methods()

    @api.get("/benchmarks", summary="Benchmarks and whether each runs offline now")
    def benchmarks() -> dict:
        return service.benchmarks()

    @api.get("/gpu", summary="Device status (GPU, or the CPU when there is none)")
    def gpu() -> dict:
        return service.gpu()

    @app.get("/health", summary="Health check (no key needed)")
    def health() -> dict:
        return service.health(settings.dagster_url)

    app.include_router(api)
    return app
