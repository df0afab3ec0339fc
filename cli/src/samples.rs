//! A sample event body for each provider, shaped like that provider's real payloads, so that
//! `edgehook send <source>` works without a file. `{{id}}` is replaced with a fresh event id and
//! `{{now_ms}}` with the current time in milliseconds. Every body that a signature is sealed by
//! (providers whose ids are unsigned: `Provider::seal_by`) has one of them, so that each send is
//! a new signed request, not a resend that edgehook would record as `dropped`.

use edgehook_core::providers::Provider;

/// The sample body and any headers the provider sends besides its signature.
pub fn sample(provider: Provider) -> (&'static str, &'static [(&'static str, &'static str)]) {
    const JSON: (&str, &str) = ("Content-Type", "application/json");
    match provider {
        Provider::Stripe => (
            r#"{"id":"{{id}}","object":"event","type":"invoice.paid","created":1700000000,"data":{"object":{"id":"in_sample","object":"invoice","amount_paid":2000}}}"#,
            &[JSON],
        ),
        Provider::Github => (
            r#"{"action":"opened","issue":{"number":1,"node_id":"{{id}}","title":"edgehook sample"},"repository":{"full_name":"octo/hello"}}"#,
            &[JSON, ("X-GitHub-Event", "issues")],
        ),
        Provider::Standard => (r#"{"type":"user.created","timestamp":"2024-01-01T00:00:00Z","data":{"id":"user_1"}}"#, &[JSON]),
        Provider::Shopify => (
            r#"{"id":820982911946154508,"token":"{{id}}","email":"jon@example.com","total_price":"199.00","currency":"USD"}"#,
            &[JSON, ("X-Shopify-Topic", "orders/create"), ("X-Shopify-Shop-Domain", "sample.myshopify.com")],
        ),
        Provider::Slack => (
            r#"{"token":"sample","team_id":"T1","api_app_id":"A1","event":{"type":"app_mention","text":"hello","user":"U1","ts":"1700000000.000100","channel":"C1"},"type":"event_callback","event_id":"{{id}}","event_time":1700000000}"#,
            &[JSON],
        ),
        Provider::Twilio => (
            "MessageSid={{id}}&MessageStatus=delivered&AccountSid=ACsample&From=%2B15550001111&To=%2B15550002222",
            &[],
        ),
        Provider::Square => (
            r#"{"merchant_id":"MSAMPLE","type":"payment.created","event_id":"{{id}}","created_at":"2024-01-01T00:00:00Z","data":{"type":"payment","id":"PSAMPLE"}}"#,
            &[JSON],
        ),
        Provider::Paddle => (
            r#"{"event_id":"{{id}}","event_type":"transaction.completed","occurred_at":"2024-01-01T00:00:00Z","notification_id":"ntf_sample","data":{"id":"txn_sample"}}"#,
            &[JSON],
        ),
        Provider::Linear => (
            r#"{"action":"create","type":"Issue","data":{"id":"issue_sample","title":"edgehook sample"},"webhookTimestamp":{{now_ms}}}"#,
            &[JSON, ("Linear-Event", "Issue")],
        ),
        Provider::Zoom => (
            r#"{"event":"meeting.started","event_ts":{{now_ms}},"payload":{"account_id":"a1","object":{"id":"85012345678","uuid":"{{id}}"}}}"#,
            &[JSON],
        ),
        Provider::Discord => (
            r#"{"id":"{{id}}","application_id":"1","type":2,"token":"sample","version":1,"data":{"id":"2","name":"hello"}}"#,
            &[JSON],
        ),
        Provider::Sendgrid => (
            "[{\"email\":\"a@example.com\",\"timestamp\":1700000000,\"event\":\"delivered\",\"sg_event_id\":\"{{id}}\",\"sg_message_id\":\"m1\"}]\r\n",
            &[JSON],
        ),
        Provider::Hubspot => (
            r#"[{"eventId":"{{id}}","subscriptionId":12345,"portalId":62515,"occurredAt":{{now_ms}},"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123}]"#,
            &[JSON],
        ),
        Provider::Typeform => (
            r#"{"event_id":"{{id}}","event_type":"form_response","form_response":{"form_id":"sample","answers":[]}}"#,
            &[JSON],
        ),
        Provider::Twitch => (
            r#"{"subscription":{"id":"sub_sample","type":"channel.follow","version":"2","status":"enabled"},"event":{"user_id":"1","user_login":"sample"}}"#,
            &[JSON, ("Twitch-Eventsub-Subscription-Type", "channel.follow")],
        ),
        Provider::Intercom => (
            r#"{"type":"notification_event","id":"{{id}}","topic":"conversation.user.created","data":{"item":{"type":"conversation","id":"1"}}}"#,
            &[JSON],
        ),
        Provider::Pagerduty => (
            r#"{"event":{"id":"{{id}}","event_type":"incident.triggered","resource_type":"incident","occurred_at":"2024-01-01T00:00:00Z","data":{"id":"PSAMPLE"}}}"#,
            &[JSON],
        ),
        Provider::Sentry => (
            r#"{"action":"created","installation":{"uuid":"sample"},"data":{"issue":{"id":"{{id}}","title":"edgehook sample"}}}"#,
            &[JSON, ("Sentry-Hook-Resource", "issue")],
        ),
        Provider::Vercel => (
            r#"{"id":"{{id}}","type":"deployment.created","createdAt":{{now_ms}},"payload":{"deployment":{"id":"dpl_sample"}}}"#,
            &[JSON],
        ),
        Provider::Mailgun => (
            r#"{"event-data":{"id":"{{id}}","event":"delivered","timestamp":1700000000.0,"recipient":"a@example.com"}}"#,
            &[JSON],
        ),
        Provider::Gitlab => (
            r#"{"object_kind":"push","ref":"refs/heads/main","project":{"path_with_namespace":"group/project"}}"#,
            &[JSON, ("X-Gitlab-Event", "Push Hook")],
        ),
        Provider::Generic => (r#"{"id":"{{id}}","type":"sample.event"}"#, &[JSON]),
    }
}
