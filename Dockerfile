# The edgefleet image used by docker-compose.yml: one image, one process per container.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY fleet fleet
COPY sites sites
COPY rollouts rollouts
COPY simulator simulator
COPY templates templates
COPY manage.py ./
RUN pip install -c constraints.txt . && python manage.py collectstatic --noinput
RUN useradd --create-home edgefleet && mkdir -p /var/lib/edgefleet && chown edgefleet /var/lib/edgefleet
USER edgefleet
EXPOSE 8000 5555
CMD ["gunicorn", "fleet.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
