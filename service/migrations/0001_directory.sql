-- The directory's state on PostgreSQL (`nephele-server directory
-- --database postgres://…`): the tables of the embedded database, each a
-- value under a key (JSON records, keys' hashes, profiles' tar archives).
-- Keys sort bytewise (COLLATE "C"), as they do in the embedded database.

-- Durable state.
CREATE TABLE users        (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE catalog      (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE tenants      (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE notices      (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE audit        (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE sessions     (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE gateways     (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE gateway_keys (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE hosts        (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE host_keys    (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE profiles     (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
-- The token signing key, the service key, the administrator's key's hash.
CREATE TABLE meta         (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);

-- Soft state every directory sees: gateways and hosts heard from lately,
-- and sessions an administrator ended until their host is told.
CREATE TABLE live_gateways (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE live_hosts    (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE ended         (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
