//! Starts the real DynamoDB Local and checks it answers on loopback, then that it stops.

use dynamodb_local::{DynamoDbLocal, Error, Options};

#[tokio::test]
async fn starts_answers_and_stops() {
    let db = DynamoDbLocal::start(Options::default())
        .await
        .expect("DynamoDB Local starts (run through `make test`, which installs it)");
    let port = db.port();
    assert!(db.endpoint().starts_with("http://127.0.0.1:"));
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok());
    db.stop().await;
    // Give the kernel a moment to release the socket, then nothing answers any more.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
}

#[tokio::test]
async fn a_folder_without_the_jar_is_a_clear_error() {
    let missing = std::env::temp_dir().join("no-dynamodb-local-here");
    let err = DynamoDbLocal::start(Options {
        jar_dir: Some(missing.clone()),
        ..Options::default()
    })
    .await
    .expect_err("no jar, no start");
    assert!(matches!(err, Error::JarMissing(ref dir) if *dir == missing));
    assert!(err.to_string().contains("make deps"));
}
