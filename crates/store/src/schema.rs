//! Diesel's view of the tables in `migrations/sqlite`. Written by hand: keep it in step with the
//! migrations (the store tests run every query against the migrated schema).

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
        robot_address -> Text,
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
    }
}

diesel::table! {
    job_events (id) {
        id -> BigInt,
        job_id -> BigInt,
        at -> BigInt,
        from_status -> Nullable<Text>,
        to_status -> Text,
        reason -> Text,
    }
}

diesel::table! {
    idempotency_keys (key) {
        key -> Text,
        request_hash -> Text,
        job_id -> Nullable<BigInt>,
        schedule_id -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::joinable!(robot_messages -> robots (robot_address));
diesel::joinable!(jobs -> robots (robot_address));
diesel::joinable!(job_events -> jobs (job_id));
diesel::allow_tables_to_appear_in_same_query!(
    robots,
    robot_messages,
    jobs,
    job_events,
    idempotency_keys
);
