//! One connection to a broker: requests are written by one writer task in the order
//! they are made and answers are matched by correlation id, so any number of requests
//! may be in flight.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;
use ringlog_schema::frame::{self, Frame, FRAME_LEN_BYTES};
use ringlog_schema::wire::{BodyT, EnvelopeT};

use crate::client::ClientError;
use crate::net::{write_all_vectored, SocketReader};

/// Largest response frame the client accepts.
pub const RESPONSE_BYTES_MAX: usize = 256 << 20;
/// Requests queued for writing before callers wait.
const WRITE_QUEUE_MAX: usize = 1024;
/// Most queued requests the writer sends in one vectored write.
const WRITE_GATHER_MAX: usize = 64;

type Pending = Rc<RefCell<HashMap<u64, flume::Sender<Result<Frame, ClientError>>>>>;

/// A multiplexed connection. Cheap to clone.
#[derive(Clone)]
pub struct Connection {
    out: flume::Sender<Vec<Bytes>>,
    pending: Pending,
    next_id: Rc<Cell<u64>>,
    broken: Rc<RefCell<Option<ClientError>>>,
    pub addr: SocketAddr,
}

impl Connection {
    /// Connects and starts the reader and writer tasks.
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let (reader, mut writer) = futures_lite::io::split(stream);
        let (out, rx) = flume::bounded::<Vec<Bytes>>(WRITE_QUEUE_MAX);
        let pending: Pending = Rc::new(RefCell::new(HashMap::new()));
        let broken = Rc::new(RefCell::new(None));
        glommio::spawn_local(async move {
            // Whatever is queued goes out together: one sendmsg for many requests.
            while let Ok(mut bufs) = rx.recv_async().await {
                for _ in 1..WRITE_GATHER_MAX {
                    match rx.try_recv() {
                        Ok(more) => bufs.extend(more),
                        Err(_) => break,
                    }
                }
                if write_all_vectored(fd, &mut writer, &bufs).await.is_err() {
                    return;
                }
            }
            let _ = writer.close().await;
        })
        .detach();
        let (p, b) = (pending.clone(), broken.clone());
        glommio::spawn_local(async move {
            let mut reader = SocketReader::new(reader, fd);
            let err = loop {
                match read_frame(&mut reader).await {
                    Ok(frame) => {
                        let id = frame.envelope.correlation_id;
                        if let Some(tx) = p.borrow_mut().remove(&id) {
                            let _ = tx.try_send(Ok(frame));
                        }
                    }
                    Err(e) => break e,
                }
            };
            *b.borrow_mut() = Some(err.clone());
            for (_, tx) in p.borrow_mut().drain() {
                let _ = tx.try_send(Err(err.clone()));
            }
        })
        .detach();
        Ok(Self {
            out,
            pending,
            next_id: Rc::new(Cell::new(1)),
            broken,
            addr,
        })
    }

    /// The error that broke this connection, if it is broken.
    pub fn check(&self) -> Result<(), ClientError> {
        match &*self.broken.borrow() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Queues a request for writing and returns a future of its answer. Requests
    /// queued one after another are written in that order.
    pub async fn send(
        &self,
        body: BodyT,
        payload: Vec<Bytes>,
    ) -> Result<ResponseFuture, ClientError> {
        self.check()?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = flume::bounded(1);
        self.pending.borrow_mut().insert(id, tx);
        if let Err(e) = self.write(id, body, payload).await {
            self.pending.borrow_mut().remove(&id);
            return Err(e);
        }
        Ok(ResponseFuture { rx })
    }

    /// Sends a request that gets no answer (Produce with acks = 0).
    pub async fn send_oneway(&self, body: BodyT, payload: Vec<Bytes>) -> Result<(), ClientError> {
        self.check()?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.write(id, body, payload).await
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, body: BodyT, payload: Vec<Bytes>) -> Result<Frame, ClientError> {
        self.send(body, payload).await?.await_response().await
    }

    async fn write(
        &self,
        correlation_id: u64,
        body: BodyT,
        payload: Vec<Bytes>,
    ) -> Result<(), ClientError> {
        let len = payload.iter().map(Bytes::len).sum();
        let env = EnvelopeT {
            correlation_id,
            body,
        };
        let mut bufs = Vec::with_capacity(1 + payload.len());
        bufs.push(frame::encode_frame_head(&env, len));
        bufs.extend(payload);
        self.out
            .send_async(bufs)
            .await
            .map_err(|_| ClientError::Disconnected("writer stopped".into()))
    }
}

/// The answer to one request.
pub struct ResponseFuture {
    rx: flume::Receiver<Result<Frame, ClientError>>,
}

impl ResponseFuture {
    pub async fn await_response(self) -> Result<Frame, ClientError> {
        self.rx
            .recv_async()
            .await
            .map_err(|_| ClientError::Disconnected("connection closed".into()))?
    }
}

async fn read_frame<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut SocketReader<R>,
) -> Result<Frame, ClientError> {
    let mut prefix = [0u8; FRAME_LEN_BYTES];
    reader
        .read_exact(&mut prefix)
        .await
        .map_err(|e| ClientError::Disconnected(e.to_string()))?;
    let len = frame::frame_len(prefix, RESPONSE_BYTES_MAX)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let body = reader
        .read_body(len)
        .await
        .map_err(|e| ClientError::Disconnected(e.to_string()))?;
    frame::decode_frame(body).map_err(|e| ClientError::Protocol(e.to_string()))
}
