// @generated shape of `diesel print-schema`; keep in step with migrations/.

diesel::table! {
    admin_audit (id) {
        id -> Int8,
        actor -> Text,
        action -> Text,
        user_id -> Nullable<Int8>,
        details -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    credit_ledger (id) {
        id -> Int8,
        user_id -> Int8,
        delta -> Int8,
        balance_after -> Int8,
        reason -> Text,
        ref_type -> Nullable<Text>,
        ref_id -> Nullable<Text>,
        idempotency_key -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    products (id) {
        id -> Text,
        kind -> Text,
        title -> Text,
        credits -> Int8,
        plan -> Nullable<Text>,
        period_days -> Nullable<Int4>,
        price_minor -> Int8,
        currency -> Text,
        active -> Bool,
        sort_order -> Int4,
        created_at -> Timestamptz,
        price_stars -> Nullable<Int8>,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        telegram_id -> Int8,
        username -> Nullable<Text>,
        first_name -> Text,
        last_name -> Nullable<Text>,
        language_code -> Nullable<Text>,
        is_premium -> Bool,
        photo_url -> Nullable<Text>,
        allows_write_to_pm -> Bool,
        balance_credits -> Int8,
        subscription_plan -> Nullable<Text>,
        subscription_until -> Nullable<Timestamptz>,
        free_actions_used -> Int4,
        free_period_start -> Date,
        referral_code -> Text,
        referred_by -> Nullable<Int8>,
        is_blocked -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        erased_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    uploads (id) {
        id -> Uuid,
        user_id -> Int8,
        purpose -> Text,
        storage_key -> Text,
        mime -> Text,
        width -> Int4,
        height -> Int4,
        bytes -> Int8,
        sha256 -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(admin_audit -> users (user_id));
diesel::joinable!(credit_ledger -> users (user_id));
diesel::joinable!(generations -> users (user_id));
diesel::joinable!(uploads -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    admin_audit,
    credit_ledger,
    generations,
    jobs,
    products,
    uploads,
    users,
);

diesel::table! {
    generations (id) {
        id -> Uuid,
        user_id -> Int8,
        kind -> Text,
        status -> Text,
        zone -> Nullable<Text>,
        prompt -> Text,
        person_upload_id -> Nullable<Uuid>,
        item_upload_id -> Nullable<Uuid>,
        source_upload_id -> Nullable<Uuid>,
        chat_session_id -> Nullable<Uuid>,
        result_key -> Nullable<Text>,
        result_width -> Nullable<Int4>,
        result_height -> Nullable<Int4>,
        credits_spent -> Int8,
        paid_with -> Text,
        charge_key -> Text,
        provider -> Text,
        provider_task_id -> Nullable<Text>,
        attempts -> Int4,
        progress -> Int2,
        error_code -> Nullable<Text>,
        error_message -> Nullable<Text>,
        client_request_id -> Text,
        job_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        request_fingerprint -> Nullable<Text>,
    }
}

diesel::table! {
    jobs (id) {
        id -> Int8,
        kind -> Text,
        payload -> Jsonb,
        status -> Text,
        priority -> Int2,
        attempts -> Int4,
        max_attempts -> Int4,
        run_at -> Timestamptz,
        locked_by -> Nullable<Text>,
        locked_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    payments (id) {
        id -> Uuid,
        user_id -> Int8,
        provider -> Text,
        provider_payment_id -> Nullable<Text>,
        product_id -> Text,
        amount_minor -> Int8,
        currency -> Text,
        status -> Text,
        credits -> Int8,
        plan -> Nullable<Text>,
        period_days -> Nullable<Int4>,
        tax_minor -> Nullable<Int8>,
        commission_minor -> Nullable<Int8>,
        net_minor -> Nullable<Int8>,
        idempotency_key -> Text,
        client_key -> Nullable<Text>,
        create_request -> Nullable<Jsonb>,
        confirmation_url -> Nullable<Text>,
        refund_shortfall -> Int8,
        last_error -> Nullable<Text>,
        checked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    chat_sessions (id) {
        id -> Int8,
        user_id -> Int8,
        session_id -> Uuid,
        upload_id -> Nullable<Uuid>,
        messages -> Jsonb,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        cost_usd_micros -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    chat_turns (id) {
        id -> Uuid,
        user_id -> Int8,
        session_id -> Nullable<Uuid>,
        status -> Text,
        client_request_id -> Text,
        charge_key -> Text,
        credits_spent -> Int8,
        paid_with -> Text,
        model -> Text,
        attempts -> Int4,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        cost_usd_micros -> Int8,
        error_code -> Nullable<Text>,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        request_fingerprint -> Nullable<Text>,
    }
}

diesel::table! {
    payment_events (id) {
        id -> Int8,
        provider -> Text,
        event -> Text,
        object_id -> Text,
        received_at -> Timestamptz,
        body -> Jsonb,
        outcome -> Nullable<Text>,
        processed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    referrals (id) {
        id -> Int8,
        referrer_id -> Int8,
        referred_id -> Int8,
        credits_awarded -> Int8,
        created_at -> Timestamptz,
        payment_id -> Nullable<Uuid>,
        credits_taken_back -> Int8,
    }
}

diesel::table! {
    sandbox_payments (id) {
        id -> Text,
        idempotence_key -> Text,
        request -> Jsonb,
        status -> Text,
        amount_minor -> Int8,
        currency -> Text,
        description -> Text,
        metadata -> Jsonb,
        return_url -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(payments -> users (user_id));
diesel::joinable!(payments -> products (product_id));

diesel::allow_tables_to_appear_in_same_query!(payments, users);
diesel::allow_tables_to_appear_in_same_query!(payments, products);
diesel::allow_tables_to_appear_in_same_query!(referrals, users);

diesel::table! {
    erased_identities (identity_hash) {
        identity_hash -> Bytea,
        erased_at -> Timestamptz,
        blocked -> Bool,
        free_actions_used -> Int4,
        free_period_start -> Date,
        recent_generations -> Array<Timestamptz>,
    }
}

diesel::table! {
    bot_updates (update_id) {
        update_id -> Int8,
        handled_at -> Timestamptz,
    }
}

diesel::table! {
    bot_chats (telegram_id) {
        telegram_id -> Int8,
        started_at -> Timestamptz,
        blocked_at -> Nullable<Timestamptz>,
        start_source -> Nullable<Text>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notice_settings (user_id) {
        user_id -> Int8,
        notices -> Bool,
        free_actions_back -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notices (key) {
        key -> Text,
        user_id -> Int8,
        kind -> Text,
        args -> Jsonb,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
    }
}
