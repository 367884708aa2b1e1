# STAND-IN for postgres:16-alpine, for machines that cannot pull from the public registry only
# (docker/base-images.sh builds it when the pull fails): Debian bookworm's PostgreSQL 15 with an
# entrypoint that honours POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB and keeps its data in
# /var/lib/postgresql/data (mount a volume there), like the official image.
ARG DEBIAN_IMAGE=knative-jobs-standin/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/* \
        /var/lib/postgresql/15 /etc/postgresql/15 \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
USER postgres
EXPOSE 5432
# fast shutdown: disconnect clients, then stop (as the official image does)
STOPSIGNAL SIGINT
ENTRYPOINT ["sh", "/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
