# STAND-IN for python:3.11-slim, for machines that cannot pull from the public registry only
# (docker/base-images.sh builds it when the pull fails). Debian bookworm's Python 3.11 with
# venv/ensurepip (the Dockerfiles install uv from PyPI into a venv) and useradd.
ARG DEBIAN_IMAGE=knative-jobs-standin/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python-is-python3 passwd \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/*.log \
        /usr/share/doc/* /usr/share/man/* /usr/share/locale/* \
        /usr/lib/python3.11/test /usr/lib/python3.11/idlelib /usr/lib/python3.11/tkinter \
        /usr/lib/python3.11/lib2to3 /usr/lib/python3.11/pydoc_data
# The build host's CA bundle: pip and uv reach PyPI through a TLS-inspecting proxy if it has one.
COPY .ca-bundle.crt /etc/ssl/certs/ca-certificates.crt
ENV LANG=C.UTF-8 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
