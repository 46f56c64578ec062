-- payscore MySQL schema (MySQL 8 / MariaDB 10.11), rendered from storage/tables.py.
-- Do not edit: run `python -m storage.schema --write` after changing the tables.

CREATE TABLE dead_letters (
	topic VARCHAR(249) NOT NULL, 
	kafka_partition INTEGER NOT NULL, 
	kafka_offset BIGINT NOT NULL, 
	message_key VARCHAR(255), 
	raw_value MEDIUMBLOB, 
	error TEXT NOT NULL, 
	received_at DATETIME(6) COMMENT 'Kafka record time, UTC', 
	dead_lettered_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	PRIMARY KEY (topic, kafka_partition, kafka_offset)
)COMMENT='Messages that broke the contract, keyed by where they were read.';

CREATE TABLE model_versions (
	version VARCHAR(64) NOT NULL, 
	parent_version VARCHAR(64), 
	created_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	origin VARCHAR(16) NOT NULL COMMENT 'pretrained, retrained or online', 
	labels_learned BIGINT NOT NULL, 
	content_hash VARCHAR(64) NOT NULL COMMENT 'SHA-256 of the artifact', 
	artifact_path VARCHAR(512) NOT NULL, 
	metadata JSON NOT NULL, 
	artifact MEDIUMBLOB NOT NULL COMMENT 'the pickled model', 
	PRIMARY KEY (version)
)COMMENT='Every model version that scored or may score payments.';

CREATE TABLE scored_payments (
	transaction_id VARCHAR(64) NOT NULL, 
	card_id VARCHAR(64) NOT NULL, 
	merchant_id VARCHAR(64) NOT NULL, 
	terminal_id VARCHAR(64) NOT NULL, 
	amount_minor BIGINT NOT NULL, 
	currency VARCHAR(3) NOT NULL, 
	event_time DATETIME(6) NOT NULL COMMENT 'UTC', 
	utc_offset_minutes SMALLINT NOT NULL, 
	fraud_probability DOUBLE NOT NULL, 
	decision VARCHAR(8) NOT NULL COMMENT 'approve, review or decline', 
	reason_codes JSON NOT NULL COMMENT 'up to three feature names', 
	model_version VARCHAR(64) NOT NULL, 
	features JSON NOT NULL COMMENT 'feature name -> value used to score', 
	kafka_partition INTEGER NOT NULL, 
	kafka_offset BIGINT NOT NULL, 
	scored_at DATETIME(6) NOT NULL COMMENT 'UTC', 
	label_is_fraud BOOL COMMENT 'set once, when the label is learned', 
	label_reported_at DATETIME(6) COMMENT 'UTC', 
	PRIMARY KEY (transaction_id)
)COMMENT='One row per payment, first write wins: a replayed payment changes nothing.';

CREATE INDEX ix_scored_payments_card_time ON scored_payments (card_id, event_time);

CREATE INDEX ix_scored_payments_event_time ON scored_payments (event_time);
