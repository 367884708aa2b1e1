-- Demo rows of the development GraphQL API (devstack/src/devstack/graphql_api.py).
--
-- A small stand-in for the Constructive meta schema: one database with one site (domain,
-- theme, legal-terms module) and one user, in a schema of its own. Safe to run again: tables
-- and rows are only created when missing. Two functions answer the two GraphQL operations the
-- send-verification-link function sends, in the shape the real API answers them.

CREATE SCHEMA IF NOT EXISTS devstack;

CREATE TABLE IF NOT EXISTS devstack.databases (
    id uuid PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE IF NOT EXISTS devstack.sites (
    id uuid PRIMARY KEY,
    database_id uuid NOT NULL REFERENCES devstack.databases (id) ON DELETE CASCADE,
    title text,
    logo jsonb
);

CREATE TABLE IF NOT EXISTS devstack.domains (
    id uuid PRIMARY KEY,
    site_id uuid NOT NULL REFERENCES devstack.sites (id) ON DELETE CASCADE,
    subdomain text,
    domain text NOT NULL
);

CREATE TABLE IF NOT EXISTS devstack.site_themes (
    id uuid PRIMARY KEY,
    site_id uuid NOT NULL REFERENCES devstack.sites (id) ON DELETE CASCADE,
    theme jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS devstack.site_modules (
    id uuid PRIMARY KEY,
    site_id uuid NOT NULL REFERENCES devstack.sites (id) ON DELETE CASCADE,
    name text NOT NULL,
    data jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS devstack.users (
    id uuid PRIMARY KEY,
    username text NOT NULL,
    display_name text,
    profile_picture jsonb
);

-- The answer to GetDatabaseInfo(databaseId): {"databases": {"nodes": [{"sites": ...}]}}.
CREATE OR REPLACE FUNCTION devstack.get_database_info(database_id uuid)
RETURNS json
LANGUAGE sql
STABLE
AS $$
    SELECT json_build_object('databases', json_build_object('nodes', coalesce((
        SELECT json_agg(json_build_object('sites', json_build_object('nodes', coalesce((
            SELECT json_agg(json_build_object(
                'domains', json_build_object('nodes', coalesce((
                    SELECT json_agg(json_build_object(
                        'subdomain', dm.subdomain, 'domain', dm.domain) ORDER BY dm.id)
                    FROM devstack.domains AS dm
                    WHERE dm.site_id = s.id), '[]'::json)),
                'logo', s.logo,
                'title', s.title,
                'siteThemes', json_build_object('nodes', coalesce((
                    SELECT json_agg(json_build_object('theme', t.theme) ORDER BY t.id)
                    FROM devstack.site_themes AS t
                    WHERE t.site_id = s.id), '[]'::json)),
                'siteModules', json_build_object('nodes', coalesce((
                    SELECT json_agg(json_build_object('data', m.data) ORDER BY m.id)
                    FROM devstack.site_modules AS m
                    WHERE m.site_id = s.id AND m.name = 'legal_terms_module'), '[]'::json))
            ) ORDER BY s.id)
            FROM devstack.sites AS s
            WHERE s.database_id = d.id), '[]'::json))))
        FROM devstack.databases AS d
        WHERE d.id = get_database_info.database_id), '[]'::json)));
$$;

-- The answer to GetUser(userId): {"users": {"nodes": [{"username", "displayName", ...}]}}.
CREATE OR REPLACE FUNCTION devstack.get_user(user_id uuid)
RETURNS json
LANGUAGE sql
STABLE
AS $$
    SELECT json_build_object('users', json_build_object('nodes', coalesce((
        SELECT json_agg(json_build_object(
            'username', u.username,
            'displayName', u.display_name,
            'profilePicture', u.profile_picture))
        FROM devstack.users AS u
        WHERE u.id = get_user.user_id), '[]'::json)));
$$;

-- The demo tenant (its id is devstack.stack.DEMO_DATABASE_ID) and its site.
INSERT INTO devstack.databases (id, name)
VALUES ('5b720132-17d5-424d-9bcb-ee7b17c13d43', 'demo')
ON CONFLICT (id) DO NOTHING;

INSERT INTO devstack.sites (id, database_id, title, logo)
VALUES (
    '2f1c6a8e-4b7d-4e0a-9c3b-5d8e1f2a6b70',
    '5b720132-17d5-424d-9bcb-ee7b17c13d43',
    'Demo App',
    NULL
)
ON CONFLICT (id) DO NOTHING;

INSERT INTO devstack.domains (id, site_id, subdomain, domain)
VALUES (
    '6e3d9b2a-1c4f-4a8e-b7d0-3f5a2c9e8d41',
    '2f1c6a8e-4b7d-4e0a-9c3b-5d8e1f2a6b70',
    NULL,
    'localhost'
)
ON CONFLICT (id) DO NOTHING;

INSERT INTO devstack.site_themes (id, site_id, theme)
VALUES (
    'a4b8c2d6-3e7f-4a1b-9c5d-7e0f2a4b6c81',
    '2f1c6a8e-4b7d-4e0a-9c3b-5d8e1f2a6b70',
    '{"primary": "#335C67"}'
)
ON CONFLICT (id) DO NOTHING;

INSERT INTO devstack.site_modules (id, site_id, name, data)
VALUES (
    'c7d1e5f9-2a6b-4c0d-8e3f-9a1b5c7d2e92',
    '2f1c6a8e-4b7d-4e0a-9c3b-5d8e1f2a6b70',
    'legal_terms_module',
    '{"emails": {"support": "support@localhost.test"},
      "company": {"name": "Demo Company", "nick": "Demo", "website": "http://localhost:3000"}}'
)
ON CONFLICT (id) DO NOTHING;

-- The demo user (sender_id of invite emails).
INSERT INTO devstack.users (id, username, display_name, profile_picture)
VALUES ('9a5b1e3c-7d42-4c8e-b1f0-2e6d8c4a7b19', 'demo', 'Demo Sender', NULL)
ON CONFLICT (id) DO NOTHING;
