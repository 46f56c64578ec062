-- payscore MySQL schema (MySQL 8 / MariaDB 10.11), rendered from storage/tables.py.
-- Do not edit: run `python -m storage.schema --write` after changing the tables.

CREATE TABLE dead_letters (
	topic VARCHAR(249) COLLATE utf8mb4_bin NOT NULL, 
	kafka_partition INTEGER NOT NULL, 
	kafka_offset BIGINT NOT NULL, 
	message_key LONGBLOB COMMENT 'the record''s key, whole', 
	raw_value LONGBLOB COMMENT 'the record''s value, whole', 
	message_headers LONGBLOB COMMENT 'the record''s headers, whole: JSON [[name, base64 value or null], ...]', 
	error TEXT NOT NULL, 
	received_at DATETIME(6) COMMENT 'Kafka record time, UTC', 
	dead_lettered_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	PRIMARY KEY (topic, kafka_partition, kafka_offset)
)CHARSET=utf8mb4 COMMENT='Messages that broke the contract or rows MySQL refused, keyed by where read.' COLLATE utf8mb4_unicode_ci;

CREATE TABLE fraud_labels (
	topic VARCHAR(249) COLLATE utf8mb4_bin NOT NULL, 
	kafka_partition INTEGER NOT NULL, 
	kafka_offset BIGINT NOT NULL, 
	transaction_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	card_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	is_fraud BOOL NOT NULL, 
	reported_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	status VARCHAR(8) NOT NULL COMMENT 'waiting, claimed or rejected', 
	reason TEXT COMMENT 'why a rejected label is not learned', 
	learned_version VARCHAR(64) COLLATE utf8mb4_bin COMMENT 'the first version that learned it', 
	first_seen_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	resolved_at DATETIME(6) COMMENT 'UTC', 
	analyst VARCHAR(64) COLLATE utf8mb4_bin COMMENT 'who gave it in the review queue: only when a review_verdicts row confirms it', 
	unverified_analyst VARCHAR(64) COLLATE utf8mb4_bin COMMENT 'an analyst the message named that no review_verdicts row confirms: a claim, never shown as that analyst''s verdict', 
	PRIMARY KEY (topic, kafka_partition, kafka_offset)
)CHARSET=utf8mb4 COMMENT='Every fraud label read, keyed by where it was read: what became of it.' COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_fraud_labels_status ON fraud_labels (status, topic, kafka_partition);

CREATE INDEX ix_fraud_labels_transaction ON fraud_labels (transaction_id);

CREATE TABLE fraud_rules (
	rule_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	text TEXT NOT NULL COMMENT 'canonical text (rules.syntax.to_text)', 
	action VARCHAR(8) NOT NULL COMMENT 'decline, review or allow', 
	priority INTEGER NOT NULL COMMENT 'lower first among one action', 
	status VARCHAR(8) NOT NULL COMMENT 'active, shadow or disabled', 
	created_by VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	created_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	updated_by VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	updated_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	version BIGINT NOT NULL COMMENT 'the ruleset version of the last change', 
	PRIMARY KEY (rule_id)
)CHARSET=utf8mb4 COMMENT='The rules as they are now (written by the review app and python -m rules through rules.store, read by the flow). Every change is also a ruleset_versions row.' COLLATE utf8mb4_unicode_ci;

CREATE TABLE implicit_labels (
	transaction_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	kind VARCHAR(10) NOT NULL COMMENT 'implicit', 
	card_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	event_time DATETIME(6) NOT NULL COMMENT 'UTC, the payment''s', 
	claim BIGINT NOT NULL COMMENT 'the claim that made it, numbered from 1: a replay hands on the newer ones', 
	claimed_through DATETIME(6) NOT NULL COMMENT 'UTC: the event-time cutoff', 
	claimed_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	reason TEXT COMMENT 'why it is not learned (sampled_out)', 
	learned_version VARCHAR(64) COLLATE utf8mb4_bin COMMENT 'the first version that learned it', 
	PRIMARY KEY (transaction_id, kind)
)CHARSET=utf8mb4 COMMENT='Every implicit negative, once: a payment nobody reported within the label delay, claimed as legitimate by the flow (storage.implicit).' COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_implicit_labels_claim ON implicit_labels (claim);

CREATE TABLE model_actions (
	id BIGINT NOT NULL AUTO_INCREMENT, 
	action VARCHAR(8) NOT NULL COMMENT 'shadow, unshadow or promote', 
	version VARCHAR(64) COLLATE utf8mb4_bin NOT NULL COMMENT 'the version shadowed or promoted', 
	decided_by VARCHAR(128) NOT NULL, 
	decided_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	note TEXT, 
	promoted_as VARCHAR(64) COLLATE utf8mb4_bin COMMENT 'promote: the new version recorded', 
	PRIMARY KEY (id)
)CHARSET=utf8mb4 COMMENT='Shadow scoring and promotions, as operators decided them (python -m model_state.shadow).' COLLATE utf8mb4_unicode_ci;

CREATE TABLE model_candidates (
	version VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	created_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	origin VARCHAR(16) NOT NULL, 
	content_hash VARCHAR(64) NOT NULL COMMENT 'SHA-256 of the artifact', 
	verdict TEXT NOT NULL COMMENT 'how it compared with the champion', 
	metadata JSON NOT NULL, 
	artifact MEDIUMBLOB NOT NULL COMMENT 'the pickled model', 
	PRIMARY KEY (version)
)CHARSET=utf8mb4 COMMENT='Versions that may shadow the champion and be promoted, but never score by themselves (python -m model_state.retrain --candidate).' COLLATE utf8mb4_unicode_ci;

CREATE TABLE model_versions (
	version VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	lineage BIGINT NOT NULL COMMENT 'v00002.000017 -> 2', 
	sequence BIGINT NOT NULL COMMENT 'v00002.000017 -> 17, and 0 for a root', 
	parent_version VARCHAR(64) COLLATE utf8mb4_bin, 
	created_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	origin VARCHAR(16) NOT NULL COMMENT 'pretrained, retrained or online', 
	labels_learned BIGINT NOT NULL, 
	content_hash VARCHAR(64) NOT NULL COMMENT 'SHA-256 of the artifact', 
	artifact_path VARCHAR(512) NOT NULL, 
	metadata JSON NOT NULL, 
	artifact MEDIUMBLOB NOT NULL COMMENT 'the pickled model', 
	PRIMARY KEY (version)
)CHARSET=utf8mb4 COMMENT='Every model version that scored or may score payments.' COLLATE utf8mb4_unicode_ci;

CREATE UNIQUE INDEX ix_model_versions_order ON model_versions (lineage, sequence);

CREATE TABLE review_login_audit (
	id BIGINT NOT NULL AUTO_INCREMENT, 
	at DATETIME(6) NOT NULL COMMENT 'UTC', 
	outcome VARCHAR(8) NOT NULL COMMENT 'success, failure, refused (locked), lockout (a lock began) or unlock', 
	name VARCHAR(64) COLLATE utf8mb4_bin NOT NULL COMMENT 'the name typed, cut to 64', 
	client_address VARCHAR(64) NOT NULL, 
	device VARCHAR(64) COLLATE utf8mb4_bin COMMENT 'a trusted device''s id, if one was shown', 
	session_id VARCHAR(64) COLLATE utf8mb4_bin COMMENT 'success: the review_sessions.id', 
	detail VARCHAR(255) COMMENT 'why: which lock, until when', 
	PRIMARY KEY (id)
)CHARSET=utf8mb4 COMMENT='Every sign-in attempt, lockout and unlock of the review application. Insert-only: review app and admin tool INSERT, nobody UPDATEs or DELETEs, auditors SELECT.' COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_review_login_audit_at ON review_login_audit (at);

CREATE INDEX ix_review_login_audit_name ON review_login_audit (name, at);

CREATE TABLE review_login_limits (
	kind VARCHAR(8) NOT NULL COMMENT 'account, address or device', 
	subject VARCHAR(64) COLLATE utf8mb4_bin NOT NULL COMMENT 'the user name, the client address or the trusted device''s id', 
	failures INTEGER NOT NULL COMMENT 'failed sign-ins in the current run', 
	last_failure_at DATETIME(6) COMMENT 'UTC', 
	locked_until DATETIME(6) COMMENT 'UTC: sign-ins are refused before', 
	PRIMARY KEY (kind, subject)
)CHARSET=utf8mb4 COMMENT='Failed sign-ins and locks per account, client address and trusted device (review.throttle, review.signin). Review app: SELECT, INSERT, UPDATE (failures, last_failure_at, locked_until). Admin tool: SELECT, UPDATE (failures, locked_until).' COLLATE utf8mb4_unicode_ci;

CREATE TABLE review_sessions (
	id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL COMMENT 'SHA-256 (hex) of the session token in the cookie (the token is never stored)', 
	user_name VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	credentials VARCHAR(64) COLLATE utf8mb4_bin NOT NULL COMMENT 'SHA-256 (hex) of the user''s role and password hash at sign-in: a changed role or password ends the session', 
	client_address VARCHAR(64) NOT NULL COMMENT 'where the sign-in came from', 
	created_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	last_seen_at DATETIME(6) NOT NULL COMMENT 'UTC: the last request', 
	ended_at DATETIME(6) COMMENT 'UTC, NULL while live', 
	end_reason VARCHAR(16) COMMENT 'logout, replaced, idle, expired, credentials or removed', 
	PRIMARY KEY (id)
)CHARSET=utf8mb4 COMMENT='Sessions of the review application, checked on every request (review.sessions). Review app: SELECT, INSERT, UPDATE (last_seen_at, ended_at, end_reason).' COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_review_sessions_user ON review_sessions (user_name, created_at);

CREATE TABLE review_users (
	name VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	`role` VARCHAR(8) NOT NULL COMMENT 'analyst or viewer', 
	password_hash VARCHAR(255) NOT NULL COMMENT 'scrypt (review.passwords)', 
	created_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	PRIMARY KEY (name)
)CHARSET=utf8mb4 COMMENT='Who may sign in to the review queue (python -m review.users). Review app: SELECT. Admin tool: SELECT, INSERT, UPDATE (role, password_hash).' COLLATE utf8mb4_unicode_ci;

CREATE TABLE review_verdicts (
	id BIGINT NOT NULL AUTO_INCREMENT, 
	transaction_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	card_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	analyst VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	is_fraud BOOL NOT NULL COMMENT 'the verdict', 
	note TEXT, 
	decided_at DATETIME(6) NOT NULL COMMENT 'UTC, the label''s reported_at', 
	model_version VARCHAR(64) COLLATE utf8mb4_bin NOT NULL COMMENT 'the version that scored the payment', 
	model_decision VARCHAR(8) NOT NULL COMMENT 'what the verdict overrode', 
	model_probability DOUBLE NOT NULL, 
	earlier_label_is_fraud BOOL COMMENT 'the payment''s label then', 
	earlier TEXT COMMENT 'earlier labels and verdicts, in words', 
	labels_topic VARCHAR(249) COLLATE utf8mb4_bin NOT NULL, 
	kafka_partition INTEGER COMMENT 'where the label was written', 
	kafka_offset BIGINT COMMENT 'NULL: not delivered', 
	delivery_error TEXT, 
	PRIMARY KEY (id)
)CHARSET=utf8mb4 COMMENT='Every verdict given in the review queue, and the label message it became. Review app: SELECT, INSERT, UPDATE (kafka_partition, kafka_offset, delivery_error). The flow: SELECT (transaction_id, card_id, analyst, is_fraud, decided_at), to confirm a label''s analyst (storage.labels).' COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_review_verdicts_transaction ON review_verdicts (transaction_id);

CREATE TABLE rule_list_blobs (
	list_name VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	version BIGINT NOT NULL, 
	part INTEGER NOT NULL, 
	data MEDIUMBLOB NOT NULL COMMENT 'rules.lists.pack: zlib(MessagePack), in parts', 
	PRIMARY KEY (list_name, version, part)
)CHARSET=utf8mb4 COMMENT='A list''s packed form, written once by the change that made it (ruleset version), what the flow loads (written by the review app and python -m rules, read by the flow).' COLLATE utf8mb4_unicode_ci;

CREATE TABLE rule_list_entries (
	id BIGINT NOT NULL AUTO_INCREMENT, 
	list_name VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	value VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	expires_at DATETIME(6) COMMENT 'UTC, applies to payments before it', 
	reason VARCHAR(500), 
	added_by VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	added_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	added_in BIGINT NOT NULL COMMENT 'the ruleset version that added it', 
	removed_in BIGINT COMMENT 'the version that removed it, NULL: on', 
	removed_by VARCHAR(64) COLLATE utf8mb4_bin, 
	removed_at DATETIME(6) COMMENT 'UTC', 
	PRIMARY KEY (id)
)CHARSET=utf8mb4 COMMENT='Every list entry ever, with the versions that added and removed it: a list at version V holds the rows with added_in <= V < removed_in (written by the review app and python -m rules, the flow reads rule_list_blobs instead).' COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_rule_list_entries_added ON rule_list_entries (list_name, added_in);

CREATE INDEX ix_rule_list_entries_current ON rule_list_entries (list_name, removed_in, value);

CREATE TABLE rule_lists (
	name VARCHAR(64) COLLATE utf8mb4_bin NOT NULL COMMENT 'written @name in rules', 
	kind VARCHAR(8) NOT NULL COMMENT 'card, merchant, terminal, country, device, bin', 
	description TEXT, 
	created_by VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	created_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	PRIMARY KEY (name)
)CHARSET=utf8mb4 COMMENT='Named lists (written by the review app and python -m rules, read by the flow).' COLLATE utf8mb4_unicode_ci;

CREATE TABLE ruleset_audit (
	id BIGINT NOT NULL AUTO_INCREMENT, 
	version BIGINT NOT NULL COMMENT 'the ruleset version it made', 
	at DATETIME(6) NOT NULL COMMENT 'UTC', 
	actor VARCHAR(64) COLLATE utf8mb4_bin NOT NULL COMMENT 'who', 
	action VARCHAR(32) NOT NULL COMMENT 'add_rule, edit_rule, set_status, ...', 
	target VARCHAR(128) NOT NULL COMMENT 'the rule or list', 
	diff JSON NOT NULL COMMENT 'what changed: before and after', 
	PRIMARY KEY (id)
)CHARSET=utf8mb4 COMMENT='Who changed which rule or list, when, and the diff. Insert-only for every account but admin (written by the review app and python -m rules).' COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_ruleset_audit_version ON ruleset_audit (version);

CREATE TABLE ruleset_versions (
	version BIGINT NOT NULL, 
	created_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	created_by VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	`change` VARCHAR(255) NOT NULL COMMENT 'what changed, in words', 
	rules JSON NOT NULL COMMENT 'every rule: rule_id, text, status', 
	lists JSON NOT NULL COMMENT 'list name -> kind, blob version, entries', 
	PRIMARY KEY (version)
)CHARSET=utf8mb4 COMMENT='Every ruleset version, whole (a rollback is a new version), the flow applies the newest (written by the review app and python -m rules, read by the flow).' COLLATE utf8mb4_unicode_ci;

CREATE TABLE scored_payments (
	transaction_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	card_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	merchant_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	terminal_id VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	amount_minor BIGINT NOT NULL, 
	currency VARCHAR(3) NOT NULL, 
	event_time DATETIME(6) NOT NULL COMMENT 'UTC', 
	utc_offset_minutes SMALLINT NOT NULL, 
	fraud_probability DOUBLE NOT NULL, 
	decision VARCHAR(8) NOT NULL COMMENT 'the final decision (rules over the model, rules.decisions): approve, review or decline', 
	reason_codes JSON NOT NULL COMMENT 'up to three feature names, empty for an approval (computed on demand)', 
	model_version VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, 
	features JSON NOT NULL COMMENT 'feature name -> value used to score', 
	kafka_partition INTEGER NOT NULL, 
	kafka_offset BIGINT NOT NULL, 
	scored_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	label_is_fraud BOOL COMMENT 'set once, when the label is learned', 
	label_reported_at DATETIME(6) COMMENT 'UTC', 
	label_kind VARCHAR(10) COMMENT 'explicit (a label message), implicit (nobody reported it within the label delay: legitimate) or correction (a fraud reported after an implicit label)', 
	appended_at DATETIME(6) COMMENT 'UTC: the Kafka record timestamp (log-append time, or the producer time)', 
	shadow_version VARCHAR(64) COLLATE utf8mb4_bin COMMENT 'the challenger shadowing, if any', 
	shadow_probability DOUBLE COMMENT 'the challenger''s probability', 
	mcc VARCHAR(4), 
	channel VARCHAR(16), 
	country VARCHAR(2), 
	device_id VARCHAR(64) COLLATE utf8mb4_bin, 
	latitude DOUBLE, 
	longitude DOUBLE, 
	model_decision VARCHAR(8) COMMENT 'the model''s own decision (its probability against the thresholds)', 
	decided_by VARCHAR(64) COLLATE utf8mb4_bin COMMENT 'the rule id that decided, or ''model''', 
	rules_fired JSON COMMENT 'ids of the active rules that fired, in precedence order, the deciding one first', 
	shadow_hits JSON COMMENT 'ids of the shadow rules that would have fired (never deciding)', 
	rule_reasons JSON COMMENT 'words naming the rules that decided (rules.decisions), empty: the model alone', 
	ruleset_version BIGINT COMMENT 'the ruleset decided with', 
	stored_at DATETIME(6) COMMENT 'UTC: when MySQL wrote the row, inside the transaction of its batch' DEFAULT CURRENT_TIMESTAMP(6), 
	feature_vector BLOB COMMENT 'the features as float64s in catalogue order (storage.feature_vector)', 
	PRIMARY KEY (transaction_id)
)CHARSET=utf8mb4 COMMENT='One row per payment, first write wins: a replayed payment changes nothing.' COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_scored_payments_card_time ON scored_payments (card_id, event_time);

CREATE INDEX ix_scored_payments_event_time ON scored_payments (event_time);

CREATE INDEX ix_scored_payments_merchant_queue ON scored_payments (merchant_id, decision, fraud_probability, transaction_id);

CREATE INDEX ix_scored_payments_queue ON scored_payments (decision, fraud_probability, transaction_id);

CREATE INDEX ix_scored_payments_unlabelled ON scored_payments (label_is_fraud, event_time);
