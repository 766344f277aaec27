//! A Rust client of the WebSocket protocol: connects with a hello, sends PCM16 audio (paced or not) and control
//! messages, receives typed events and the agent's audio. Used by the demo, the examples and the tests.
//!
//! ```no_run
//! use agents_transport::client::{ClientEvent, WsClient};
//! use agents_transport::protocol::{AudioFormat, Hello};
//!
//! # async fn run() -> Result<(), agents_transport::client::ClientError> {
//! let mut client = WsClient::connect("ws://127.0.0.1:8080/ws", Hello::new(AudioFormat::input_default())).await?;
//! client.send_text("What time is it?").await?;
//! while let Some(event) = client.next_event().await {
//!     match event? {
//!         ClientEvent::Audio(frame) => { /* play it */ let _ = frame; }
//!         ClientEvent::Message(m) => println!("{m:?}"),
//!         ClientEvent::Closed { .. } => break,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use agents_audio::{AudioFrame, SampleRate};
use agents_core::ApiKey;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, Stream, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::{AudioFormat, ClientMessage, Hello, Ready, ServerMessage};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused the upgrade with this HTTP status (401: missing or wrong token).
    #[error("the server refused the connection: HTTP {status}")]
    Rejected {
        /// HTTP status.
        status: u16,
    },
    /// The WebSocket failed (connect, read or write).
    #[error("websocket error: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// The URL or a header could not be used.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The server answered the hello with an error.
    #[error("hello refused: {code}: {message}")]
    HelloRefused {
        /// Error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// The server sent something this protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection closed.
    #[error("connection closed")]
    Closed,
    /// An audio frame does not have the negotiated input format.
    #[error(
        "audio frame is {actual_rate} Hz x{actual_channels}, the connection expects {expected:?}"
    )]
    FormatMismatch {
        /// Negotiated format.
        expected: AudioFormat,
        /// The frame's rate.
        actual_rate: u32,
        /// The frame's channels.
        actual_channels: u16,
    },
}

/// Something received from the server.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A JSON event.
    Message(ServerMessage),
    /// Agent audio at the negotiated output format.
    Audio(AudioFrame),
    /// The server closed the WebSocket.
    Closed {
        /// Close code, when given.
        code: Option<u16>,
        /// Close reason.
        reason: String,
    },
}

/// The sending half of a connection.
#[derive(Debug)]
pub struct WsSender {
    sink: SplitSink<Ws, Message>,
    input: AudioFormat,
}

/// The receiving half of a connection.
#[derive(Debug)]
pub struct WsReceiver {
    stream: SplitStream<Ws>,
    output: AudioFormat,
    rate: SampleRate,
}

/// A connected client (after `ready`).
#[derive(Debug)]
pub struct WsClient {
    sender: WsSender,
    receiver: WsReceiver,
    ready: Ready,
}

impl WsClient {
    /// Connects to `url` (`ws://host:port/ws`) and exchanges the hello.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn connect(url: &str, hello: Hello) -> Result<Self, ClientError> {
        Self::connect_with(url, hello, None, Duration::from_secs(10)).await
    }

    /// Connects with a bearer token (sent in the `Authorization` header) and a bound on the whole handshake.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn connect_with(
        url: &str,
        hello: Hello,
        token: Option<&ApiKey>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let ws = Self::open(url, token, timeout).await?;
        let (mut sink, mut stream) = ws.split();
        let text = serde_json::to_string(&ClientMessage::Hello(hello))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        sink.send(Message::Text(text.into())).await?;
        let ready = tokio::time::timeout(timeout, async {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return match serde_json::from_str::<ServerMessage>(t.as_str()) {
                            Ok(ServerMessage::Ready(r)) => Ok(r),
                            Ok(ServerMessage::Error { code, message, .. }) => {
                                Err(ClientError::HelloRefused { code, message })
                            }
                            Ok(other) => Err(ClientError::Protocol(format!(
                                "expected ready, got {other:?}"
                            ))),
                            Err(e) => Err(ClientError::Protocol(e.to_string())),
                        };
                    }
                    Some(Ok(Message::Binary(_))) => {
                        return Err(ClientError::Protocol("audio before ready".to_owned()));
                    }
                    Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            }
        })
        .await
        .map_err(|_| ClientError::Protocol("no ready within the timeout".to_owned()))??;
        let rate = SampleRate::new(ready.output.sample_rate)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Self {
            sender: WsSender {
                sink,
                input: ready.input,
            },
            receiver: WsReceiver {
                stream,
                output: ready.output,
                rate,
            },
            ready,
        })
    }

    /// Opens the WebSocket without sending anything (for tests of the hello itself).
    ///
    /// # Errors
    /// [`ClientError::Rejected`] when the server answers the upgrade with an HTTP error.
    pub async fn open(
        url: &str,
        token: Option<&ApiKey>,
        timeout: Duration,
    ) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, ClientError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| ClientError::InvalidRequest(e.to_string()))?;
        if let Some(token) = token {
            let value =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    ClientError::InvalidRequest("token is not a valid header value".to_owned())
                })?;
            request.headers_mut().insert("authorization", value);
        }
        let connected = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| ClientError::Protocol("connect timed out".to_owned()))?;
        match connected {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(response)) => Err(ClientError::Rejected {
                status: response.status().as_u16(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The server's `ready`.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// Splits into halves that can be used from two tasks.
    pub fn split(self) -> (WsSender, WsReceiver) {
        (self.sender, self.receiver)
    }

    /// See [`WsSender::send`].
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        self.sender.send(message).await
    }

    /// See [`WsSender::send_text`].
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.sender.send_text(text).await
    }

    /// See [`WsSender::send_audio`].
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn send_audio(&mut self, frame: &AudioFrame) -> Result<(), ClientError> {
        self.sender.send_audio(frame).await
    }

    /// See [`WsSender::send_raw`].
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn send_raw(&mut self, message: Message) -> Result<(), ClientError> {
        self.sender.send_raw(message).await
    }

    /// See [`WsReceiver::next_event`].
    pub async fn next_event(&mut self) -> Option<Result<ClientEvent, ClientError>> {
        self.receiver.next_event().await
    }

    /// See [`WsSender::close`].
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.sender.close().await
    }
}

impl WsSender {
    /// The negotiated input format.
    pub fn input_format(&self) -> AudioFormat {
        self.input
    }

    /// Sends a control message.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        let text =
            serde_json::to_string(message).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.sink.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Sends typed user input.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.send(&ClientMessage::Text {
            text: text.to_owned(),
        })
        .await
    }

    /// Sends one frame of user audio (it must have the negotiated input format).
    ///
    /// # Errors
    /// [`ClientError::FormatMismatch`] or a socket error.
    pub async fn send_audio(&mut self, frame: &AudioFrame) -> Result<(), ClientError> {
        if frame.sample_rate().hz() != self.input.sample_rate
            || frame.num_channels() != self.input.channels
        {
            return Err(ClientError::FormatMismatch {
                expected: self.input,
                actual_rate: frame.sample_rate().hz(),
                actual_channels: frame.num_channels(),
            });
        }
        self.sink
            .send(Message::Binary(Bytes::from(frame.to_le_bytes())))
            .await?;
        Ok(())
    }

    /// Sends every frame of `frames`; with `paced`, in real time (each frame after the previous one's duration).
    ///
    /// # Errors
    /// The first send error.
    pub async fn stream_audio(
        &mut self,
        frames: impl Stream<Item = AudioFrame>,
        paced: bool,
    ) -> Result<(), ClientError> {
        let mut frames = std::pin::pin!(frames);
        let mut next = tokio::time::Instant::now();
        while let Some(frame) = frames.next().await {
            if paced {
                tokio::time::sleep_until(next).await;
                next += frame.duration();
            }
            self.send_audio(&frame).await?;
        }
        Ok(())
    }

    /// Sends any WebSocket message as is (for tests of malformed input).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn send_raw(&mut self, message: Message) -> Result<(), ClientError> {
        self.sink.send(message).await?;
        Ok(())
    }

    /// Says `bye` and closes the WebSocket.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.send(&ClientMessage::Bye).await?;
        self.sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            })))
            .await?;
        Ok(())
    }
}

impl WsReceiver {
    /// The negotiated output format.
    pub fn output_format(&self) -> AudioFormat {
        self.output
    }

    /// The next event; `None` after the connection ended.
    pub async fn next_event(&mut self) -> Option<Result<ClientEvent, ClientError>> {
        loop {
            let message = match self.stream.next().await? {
                Ok(m) => m,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return None;
                }
                Err(e) => return Some(Err(e.into())),
            };
            return Some(match message {
                Message::Text(t) => serde_json::from_str::<ServerMessage>(t.as_str())
                    .map(ClientEvent::Message)
                    .map_err(|e| ClientError::Protocol(format!("bad server JSON: {e}"))),
                Message::Binary(b) => {
                    AudioFrame::from_le_bytes(&b, self.rate, self.output.channels)
                        .map(ClientEvent::Audio)
                        .map_err(|e| ClientError::Protocol(format!("bad server audio: {e}")))
                }
                Message::Close(frame) => Ok(ClientEvent::Closed {
                    code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                }),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            });
        }
    }
}
