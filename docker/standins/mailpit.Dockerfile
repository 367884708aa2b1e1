# STAND-IN for axllent/mailpit, for machines that cannot pull from the public registry only
# (docker/base-images.sh builds it when the pull fails): an SMTP catcher on :1025 with a web
# inbox and the part of Mailpit's JSON API that the compose test reads, on :8025.
ARG DEBIAN_IMAGE=knative-jobs-standin/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-aiosmtpd \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/*
COPY mailcatcher.py /usr/local/bin/mailcatcher.py
ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1
USER nobody
EXPOSE 1025 8025
CMD ["python3", "/usr/local/bin/mailcatcher.py"]
