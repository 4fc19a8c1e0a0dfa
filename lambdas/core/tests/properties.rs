//! Properties of the protocol parser, over generated input: any frame gets a command or a typed
//! error (never a panic, never an error message that echoes unbounded input), and every valid
//! request comes back from its JSON as the command it stands for.

use proptest::prelude::*;
use realtime_core::error::MAX_MESSAGE_CHARS;
use realtime_core::protocol::{parse, Command, MAX_HISTORY_LIMIT};
use realtime_core::{ConnectionId, HistoryPage, MessageId, Room};
use serde_json::{json, Value};

/// Any JSON value, nested a few levels, with strings that may be long or odd.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,80}".prop_map(Value::String),
        prop::sample::select(vec![
            "join",
            "leave",
            "sendmessage",
            "whisper",
            "history",
            "whoami",
            "ping",
            "ref",
            "action",
            "room",
            "text",
            "to",
            "limit",
            "before",
            "after",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "action", "room", "text", "to", "limit", "before", "after", "ref", "x",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|fields| Value::Object(
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

fn check_answer(body: &str) {
    let parsed = parse(body);
    if let Some(reference) = &parsed.reference {
        assert!((1..=64).contains(&reference.chars().count()));
    }
    if let Err(error) = parsed.command {
        assert!(
            error.message.chars().count() <= MAX_MESSAGE_CHARS + 1,
            "{} characters",
            error.message.chars().count()
        );
    }
}

fn room() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

fn text() -> impl Strategy<Value = String> {
    // Any characters, control characters included, from one to a few hundred.
    prop::collection::vec(any::<char>(), 1..300).prop_map(|chars| chars.into_iter().collect())
}

fn message_id() -> impl Strategy<Value = String> {
    "[0-9a-f]{28}"
}

/// A valid request and the command it must parse to.
fn valid_request() -> impl Strategy<Value = (Value, Command)> {
    prop_oneof![
        room().prop_map(|r| (
            json!({"action": "join", "room": r}),
            Command::Join(Room::parse(&r).expect("valid"))
        )),
        room().prop_map(|r| (
            json!({"action": "leave", "room": r}),
            Command::Leave(Room::parse(&r).expect("valid"))
        )),
        (prop::option::of(room()), text()).prop_map(|(r, t)| {
            let mut request = json!({"action": "sendmessage", "text": t});
            if let Some(r) = &r {
                request["room"] = json!(r);
            }
            let room = r.map_or_else(Room::lobby, |r| Room::parse(&r).expect("valid"));
            (request, Command::SendMessage { room, text: t })
        }),
        ("[A-Za-z0-9+/=_-]{1,128}", text()).prop_map(|(to, t)| (
            json!({"action": "whisper", "to": to, "text": t}),
            Command::Whisper {
                to: ConnectionId::from(to),
                text: t
            }
        )),
        (
            room(),
            1..=MAX_HISTORY_LIMIT,
            prop::option::of((any::<bool>(), message_id()))
        )
            .prop_map(|(r, limit, page)| {
                let mut request = json!({"action": "history", "room": r, "limit": limit});
                let page = match page {
                    None => HistoryPage::Latest,
                    Some((true, id)) => {
                        request["before"] = json!(id);
                        HistoryPage::Before(MessageId::parse("before", &id).expect("valid"))
                    }
                    Some((false, id)) => {
                        request["after"] = json!(id);
                        HistoryPage::After(MessageId::parse("after", &id).expect("valid"))
                    }
                };
                let room = Room::parse(&r).expect("valid");
                (request, Command::History { room, limit, page })
            }),
        Just((json!({"action": "whoami"}), Command::WhoAmI)),
        Just((json!({"action": "ping"}), Command::Ping)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_text_gets_a_command_or_a_typed_error(body in ".{0,200}") {
        check_answer(&body);
    }

    #[test]
    fn any_json_gets_a_command_or_a_typed_error(value in any_json()) {
        check_answer(&value.to_string());
    }

    #[test]
    fn every_valid_request_round_trips(
        (request, command) in valid_request(),
        reference in prop::option::of("[^\u{0}]{1,64}"),
    ) {
        let mut request = request;
        if let Some(reference) = &reference {
            request["ref"] = json!(reference);
        }
        let parsed = parse(&request.to_string());
        prop_assert_eq!(parsed.command, Ok(command));
        prop_assert_eq!(parsed.reference, reference);
    }
}
