# The pgwarden gateway (compose.yaml builds it). Runs as a non-root user; the configuration,
# policies and secrets are mounted, the decision log goes to /var/lib/pgwarden (a volume).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs: never the build context's secrets, virtualenvs or caches.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY enforcer ./enforcer
RUN pip install . && rm -rf /src

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/pgwarden --create-home pgwarden
COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/pgwarden-entrypoint

USER 10001:10001
WORKDIR /var/lib/pgwarden
EXPOSE 6432 8080
ENTRYPOINT ["pgwarden-entrypoint"]
CMD ["pgwarden", "run", "--config", "/etc/pgwarden/pgwarden.yaml"]
