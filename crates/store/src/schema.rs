//! Diesel's view of the tables in `migrations/sqlite` and `migrations/postgres`, the same on both.
//! Written by hand: keep it in step with the migrations (the store tests run every query against
//! the migrated schema, on both backends in CI).

diesel::table! {
    robots (address) {
        address -> Text,
        name -> Text,
        user_id -> Nullable<Text>,
        online -> Bool,
        connection_id -> Nullable<Text>,
        protocol -> Integer,
        first_seen -> BigInt,
        last_seen -> BigInt,
        metadata -> Text,
        instance_id -> Nullable<Text>,
        offline_since -> Nullable<BigInt>,
        unreachable_alerted -> Bool,
        last_assigned_at -> BigInt,
    }
}

diesel::table! {
    robot_messages (id) {
        id -> BigInt,
        robot_address -> Text,
        connection_id -> Text,
        received_at -> BigInt,
        value -> Text,
    }
}

diesel::table! {
    jobs (id) {
        id -> BigInt,
        status -> Text,
        package -> Text,
        package_name -> Text,
        robot_address -> Nullable<Text>,
        robot_name -> Text,
        run_at -> BigInt,
        schedule_id -> Nullable<BigInt>,
        attempts -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
        last_error -> Nullable<Text>,
        wake_at -> Nullable<BigInt>,
        delivery -> Integer,
        forced -> Bool,
        sent_at -> Nullable<BigInt>,
        overdue_at -> Nullable<BigInt>,
        retry_of -> Nullable<BigInt>,
        pool -> Nullable<Text>,
        declined_by -> Nullable<Text>,
        pool_waiting_since -> Nullable<BigInt>,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        #[sql_name = "type"]
        kind -> Text,
        subject -> Text,
        at -> BigInt,
        reason -> Nullable<Text>,
        job_id -> Nullable<BigInt>,
        from_status -> Nullable<Text>,
        to_status -> Nullable<Text>,
        attempts -> Nullable<Integer>,
        robot_address -> Nullable<Text>,
        last_error -> Nullable<Text>,
        data -> Nullable<Text>,
    }
}

diesel::table! {
    event_stream (id) {
        id -> BigInt,
        floor -> BigInt,
    }
}

diesel::table! {
    idempotency_keys (key) {
        key -> Text,
        request_hash -> Text,
        job_id -> Nullable<BigInt>,
        schedule_id -> Nullable<BigInt>,
        created_at -> BigInt,
        response -> Nullable<Text>,
    }
}

diesel::table! {
    robot_credentials (id) {
        id -> BigInt,
        robot_address -> Text,
        description -> Text,
        token_hash -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    robot_pools (robot_address, pool) {
        robot_address -> Text,
        pool -> Text,
    }
}

diesel::joinable!(robot_pools -> robots (robot_address));
diesel::joinable!(robot_messages -> robots (robot_address));
diesel::joinable!(robot_credentials -> robots (robot_address));
diesel::joinable!(jobs -> robots (robot_address));
diesel::joinable!(events -> jobs (job_id));

diesel::table! {
    schedules (id) {
        id -> BigInt,
        cron -> Text,
        timezone -> Text,
        start_at -> Nullable<BigInt>,
        end_at -> Nullable<BigInt>,
        package -> Text,
        package_name -> Text,
        robot_address -> Nullable<Text>,
        robot_name -> Text,
        active -> Bool,
        next_run_at -> Nullable<BigInt>,
        last_fire_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        ended_reason -> Nullable<Text>,
        paused -> Bool,
        pool -> Nullable<Text>,
    }
}

diesel::table! {
    schedule_events (id) {
        id -> BigInt,
        schedule_id -> BigInt,
        occurrence -> Nullable<BigInt>,
        at -> BigInt,
        kind -> Text,
        job_id -> Nullable<BigInt>,
        reason -> Text,
    }
}

diesel::table! {
    package_file_progress (id) {
        id -> BigInt,
        written_up_to -> BigInt,
    }
}

diesel::table! {
    pending_package_files (job_id) {
        job_id -> BigInt,
    }
}

diesel::table! {
    instances (id) {
        id -> Text,
        started_at -> BigInt,
        lease_until -> BigInt,
        description -> Text,
    }
}

diesel::table! {
    webhooks (id) {
        id -> BigInt,
        url -> Text,
        types -> Text,
        description -> Text,
        format -> Text,
        secret -> Text,
        active -> Bool,
        created_at -> BigInt,
        disabled_at -> Nullable<BigInt>,
        disabled_reason -> Nullable<Text>,
        cursor -> BigInt,
        owner -> Nullable<Text>,
        lease_until -> BigInt,
    }
}

diesel::table! {
    webhook_backlog (webhook_id, event_id) {
        webhook_id -> BigInt,
        event_id -> BigInt,
        subject -> Text,
        event_at -> BigInt,
        attempts -> Integer,
        first_attempt_at -> Nullable<BigInt>,
        next_attempt_at -> BigInt,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        webhook_id -> BigInt,
        event_id -> BigInt,
        attempt -> Integer,
        at -> BigInt,
        outcome -> Text,
        http_status -> Nullable<Integer>,
        error -> Nullable<Text>,
        duration_ms -> Nullable<BigInt>,
    }
}

diesel::joinable!(webhook_backlog -> webhooks (webhook_id));
diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));
diesel::joinable!(schedule_events -> schedules (schedule_id));
diesel::allow_tables_to_appear_in_same_query!(
    robots,
    robot_messages,
    robot_credentials,
    robot_pools,
    jobs,
    events,
    event_stream,
    idempotency_keys,
    schedules,
    schedule_events,
    package_file_progress,
    instances,
    pending_package_files,
    webhooks,
    webhook_backlog,
    webhook_deliveries,
);
