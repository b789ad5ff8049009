# ratebot: one image for `serve`, `worker` and the one-off commands (`db upgrade`, `apikey create`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RATEBOT_DATABASE_URL=sqlite:////data/ratebot.db

WORKDIR /src
COPY pyproject.toml README.md babel.cfg ./
COPY bot ./bot
COPY channels ./channels
COPY dialogs ./dialogs
COPY storage ./storage
COPY locales ./locales
# Compile the catalogs from their .po sources, then install the package (catalogs ship as data).
RUN pip install "babel>=2.15" \
 && pybabel compile -d locales -D messages \
 && pip install . \
 && rm -rf /src

RUN useradd --create-home --uid 10001 ratebot && mkdir /data && chown ratebot /data
USER ratebot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# The check of the default command (`serve`): GET /healthz. The `worker` serves no HTTP, so
# compose.yaml gives it its own (`ratebot worker --check`) and turns it off for `migrate`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["ratebot", "serve", "--host", "0.0.0.0", "--port", "8000"]
