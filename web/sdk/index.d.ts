// Type declarations for the Tandem browser SDK (web/sdk/*.js, plain ES modules).

export declare const SDK_VERSION: string;
export declare const PROTOCOL_VERSION: number;

type Listener<A extends unknown[]> = (...args: A) => void;

/** Minimal typed event emitter. `on` returns an unsubscribe function. */
export declare class Emitter<Events extends Record<string, unknown[]> = Record<string, unknown[]>> {
  on<K extends keyof Events & string>(event: K, fn: Listener<Events[K]>): () => void;
  once<K extends keyof Events & string>(event: K, fn: Listener<Events[K]>): () => void;
  off<K extends keyof Events & string>(event: K, fn: Listener<Events[K]>): void;
  /** Resolves with the first emission's first argument. */
  wait<K extends keyof Events & string>(event: K, opts?: { timeout?: number; filter?: (v: Events[K][0]) => boolean }): Promise<Events[K][0]>;
  emit<K extends keyof Events & string>(event: K, ...args: Events[K]): void;
}

/** Protocol error codes (docs/protocol.md) and the SDK's own. */
export type ErrorCode =
  | 'malformed' | 'unknown_type' | 'bad_request' | 'unsupported_frame' | 'message_too_large'
  | 'unsupported_protocol' | 'not_authenticated' | 'already_authenticated' | 'token_invalid'
  | 'token_expired' | 'too_many_connections' | 'forbidden' | 'already_joined' | 'not_joined'
  | 'room_full' | 'too_many_rooms' | 'participant_not_found' | 'already_subscribed'
  | 'not_subscribed' | 'too_many_subscriptions' | 'rate_limited' | 'unavailable' | 'internal'
  // SDK-side
  | 'timeout' | 'connection_lost' | 'closed' | 'cancelled' | 'transfer_failed' | 'already_in_call' | 'bad_url';

export declare class TandemError extends Error {
  name: 'TandemError';
  code: ErrorCode | string;
  /** With `rate_limited`. */
  retryAfterMs?: number;
}

export type JSONValue = null | boolean | number | string | JSONValue[] | { [k: string]: JSONValue };

export interface IceServer { urls: string[] | string; username?: string; credential?: string }

/** The server's `connect` reply. */
export interface ConnectInfo {
  client_id: string;
  identity: string;
  name?: string;
  protocol: number;
  server: string;
  ping_interval_ms: number;
  idle_timeout_ms: number;
  /** When the token expires (Unix seconds). With a token provider the SDK refreshes it before then. */
  expires_at: number;
  limits: Record<string, number>;
  ice_servers: IceServer[];
}

export interface BackoffOptions {
  /** First delay, ms (default 250). */ min?: number;
  /** Cap, ms (default 15000). */ max?: number;
  /** Growth per attempt (default 2). */ factor?: number;
}

export interface ClientOptions {
  /** Per-request timeout, ms (default 10000; 0 = none). */
  requestTimeout?: number;
  /** `connect()` gives up after this long, ms (default 20000; 0 = never). */
  connectTimeout?: number;
  /** Reconnect delays: exponential with jitter (each delay is in [d/2, d]). */
  backoff?: BackoffOptions;
  /** WebSocket implementation (default `globalThis.WebSocket`). */
  WebSocket?: typeof WebSocket;
  /** Sent as `client` in `connect`. */
  clientName?: string;
}

export type TokenSource = string | (() => string | Promise<string>);
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected';

export interface DisconnectInfo {
  /** WebSocket close code (4010 = asked to reconnect, 4001 = bad token …). */
  code: number;
  reason: string;
  /** True when the SDK is reconnecting by itself. */
  reconnect: boolean;
}

export type ClientEvents = {
  /** Every state change: show it in the UI. `connected` comes after rooms and subscriptions are restored. */
  state: [state: ConnectionState, previous: ConnectionState];
  connected: [{ info: ConnectInfo; reconnected: boolean }];
  /** A live session dropped (failed reconnect attempts fire only `reconnecting`). */
  disconnected: [DisconnectInfo];
  reconnecting: [{ attempt: number; delay: number }];
  /** Errors without a request to reject (e.g. server errors without `id`). */
  error: [TandemError];
  /** Pushes of types this SDK does not know. */
  push: [Record<string, unknown>];
  /** The token provider's new token was accepted; the session now lasts until `expiresAt` (Unix seconds). */
  refreshed: [{ expiresAt: number }];
};

export declare class TandemClient extends Emitter<ClientEvents> {
  constructor(url: string, token: TokenSource, opts?: ClientOptions);
  readonly url: string;
  state: ConnectionState;
  /** The current session's `connect` reply. */
  info: ConnectInfo | null;
  /** Last `ping()` round trip, ms. */
  rtt: number | null;
  readonly connected: boolean;
  readonly iceServers: IceServer[];
  readonly rooms: Map<string, Room>;
  readonly subscriptions: Map<string, Subscription>;
  /** Connects; transient failures are retried with backoff until `connectTimeout`. */
  connect(): Promise<ConnectInfo>;
  /** Closes for good (no reconnect). */
  close(): void;
  /** Drops the socket and reconnects as after a network failure. */
  reconnectNow(): void;
  /** Any protocol request; resolves with `result`. Waits while reconnecting. */
  request<T = any>(type: string, body?: Record<string, unknown>, opts?: { timeout?: number }): Promise<T>;
  ping(): Promise<number>;
  publish(channel: string, data: JSONValue): Promise<PublishAck>;
  history(channel: string, opts?: { before?: number; since?: number; limit?: number }): Promise<HistoryPage>;
  subscribe(channel: string, opts?: { since?: StreamPosition }): Subscription;
  join(room: string, opts?: { metadata?: JSONValue }): Promise<Room>;
}

/** `connect(url, token)`: a connected client. */
export declare function connect(url: string, token: TokenSource, opts?: ClientOptions): Promise<TandemClient>;
export declare function normalizeUrl(url: string, base?: string): string;

export interface PublishAck { offset: number; epoch: string }
export interface StreamPosition { offset: number; epoch: string }
export interface Publication { channel: string; offset: number; data: JSONValue; from?: string; ts: number }
export interface HistoryPage {
  channel: string; epoch: string; offset: number; earliest: number;
  publications: Array<Omit<Publication, 'channel'>>;
}
/** Publications that could not be recovered (the app is told, never silently). */
export interface Gap {
  reason: 'epoch_changed' | 'history_expired' | string;
  /** First lost offset. */ from: number;
  /** Last lost offset (null when unknown, e.g. after an epoch change). */ to: number | null;
  epoch: string;
}

export type SubscriptionEvents = {
  /** Every publication exactly once, in offset order, across reconnects. */
  publication: [Publication];
  gap: [Gap];
  subscribed: [{ resumed: boolean; recovered?: boolean; epoch: string; offset: number }];
  error: [TandemError];
  unsubscribed: [];
};

export declare class Subscription extends Emitter<SubscriptionEvents> {
  readonly channel: string;
  state: 'subscribing' | 'subscribed' | 'unsubscribed';
  readonly ready: Promise<Subscription>;
  /** Last delivered position: store it to resume later with `subscribe(ch, {since})`. */
  readonly position: StreamPosition;
  publish(data: JSONValue): Promise<PublishAck>;
  history(opts?: { before?: number; since?: number; limit?: number }): Promise<HistoryPage>;
  unsubscribe(): Promise<void>;
}

export declare class Participant {
  sid: string;
  identity: string;
  name: string | null;
  metadata: any;
  joinedAt: number;
  isLocal: boolean;
  /** name, else metadata.name, else identity */
  readonly displayName: string;
}

export type LeaveReason = 'left' | 'disconnected' | 'removed' | 'duplicate_identity';

export type RoomEvents = {
  participantJoined: [Participant];
  participantLeft: [Participant, LeaveReason];
  participantUpdated: [Participant];
  /** Signals that are not the SDK's own call signaling. */
  signal: [{ from: string; fromIdentity: string; participant: Participant | null; data: JSONValue }];
  /** The server changed the room's media mode (a call follows it by itself). */
  mediaMode: [MediaMode];
  reconnecting: [];
  reconnected: [];
  removed: [reason: string];
  left: [];
};

/** How a room's media travels: peer to peer, or through the server's SFU. */
export type MediaMode = 'mesh' | 'sfu';

export declare class Room extends Emitter<RoomEvents> {
  readonly name: string;
  readonly client: TandemClient;
  state: 'joining' | 'joined' | 'reconnecting' | 'left';
  /** Remote participants by sid. */
  participants: Map<string, Participant>;
  localParticipant: Participant | null;
  /** The room's media mode as the server says (`mesh` when it runs no SFU). */
  mediaMode: MediaMode;
  participantByIdentity(identity: string): Participant | undefined;
  setMetadata(metadata: JSONValue): Promise<void>;
  signal(toSid: string, data: JSONValue): Promise<void>;
  /** Room chat on `room:NAME:chat`. */
  readonly chat: Chat;
  /** Start a call (camera + microphone unless disabled), mesh or SFU as the room says. */
  call(opts?: CallOptions): Promise<Call>;
  leave(): Promise<void>;
}

export interface ChatMessage {
  offset: number;
  /** Sender identity (null for server API publications). */
  from: string | null;
  data: JSONValue;
  /** `data.text` when present. */
  text: string | null;
  ts: number;
  mine: boolean;
}

export declare class Chat extends Emitter<{ message: [ChatMessage]; gap: [Gap]; error: [TandemError] }> {
  readonly channel: string;
  readonly ready: Promise<Chat>;
  readonly subscription: Subscription;
  /** False once "load older" reached the start of the retained history. */
  readonly hasMore: boolean;
  /** Resolves with the server's ack once the message is durable. */
  send(message: string | JSONValue): Promise<PublishAck>;
  /** The `limit` messages older than anything loaded so far (ascending order). */
  loadOlder(limit?: number): Promise<ChatMessage[]>;
}

export interface CallOptions {
  /** getUserMedia audio constraints, or false (default true). */
  audio?: boolean | MediaTrackConstraints;
  /** getUserMedia video constraints, or false (default true). */
  video?: boolean | MediaTrackConstraints;
  /** Use this stream instead of calling getUserMedia (e.g. a lobby preview). */
  localStream?: MediaStream | null;
  /**
   * Overrides the server's ICE servers (`client.iceServers`: Tandem's TURN with
   * fresh credentials, renewed on reconnect and token refresh). Used by the mesh
   * connections and the SFU connection alike.
   */
  iceServers?: IceServer[] | null;
  /**
   * Extra RTCConfiguration fields for every connection of the call, mesh and SFU
   * (e.g. `{iceTransportPolicy: 'relay'}` to send everything through TURN).
   * Its `iceServers` is ignored: pass `iceServers` instead.
   */
  rtcConfig?: RTCConfiguration;
  /** How long a peer that lost its server connection is kept, ms (default 8000). */
  peerGraceMs?: number;
  /** Stats refresh period, ms (default 2000; 0 = only on `refreshStats()`). */
  statsInterval?: number;
  /** Restart ICE after this long in `disconnected`, ms (default 2500). */
  iceRestartDelayMs?: number;
  /**
   * SFU mode: publish the camera with simulcast. `true` (default): q/h/f from 960 px
   * wide, h/f from 480 px, none below; `false`: never; or explicit encodings
   * (lowest layer first, each with a `rid`).
   */
  simulcast?: boolean | RTCRtpEncodingParameters[];
  /**
   * Video codec to put first in every offer and answer (mesh and SFU), e.g. `'h264'`
   * or `'video/VP8'`; the browser's other codecs stay as fallbacks. Default: the
   * browser's order (VP8 in Chromium). Ignored when the browser lacks the codec.
   */
  videoCodec?: string | null;
  /** Longest wait for the new path to carry everything before the old one closes, ms (default 8000). */
  migrationTimeoutMs?: number;
  /** SFU mode: close a side connection for files after this long without a transfer, ms (default 15000). */
  fileIdleMs?: number;
  /** SFU mode: fail files (`transfer_failed`) when their side connection is not up after this long, ms (default 15000). */
  fileConnectTimeoutMs?: number;
}

export type TrackSource = 'camera' | 'microphone' | 'screen';
export interface TrackEvent { peer: Peer; track: MediaStreamTrack; stream: MediaStream; source: TrackSource }
export interface MediaState { audio: boolean; video: boolean; screen: boolean }

export interface PeerStats {
  /** `direct` (host/srflx/prflx) or through a TURN `relay`. */
  path: 'direct' | 'relay' | 'unknown';
  localCandidateType: string | null;
  remoteCandidateType: string | null;
  protocol: string | null;
  /** ms */ rtt: number | null;
  /** bits per second over the last interval */ bitrateIn: number | null;
  bitrateOut: number | null;
  /** fraction 0..1 of inbound packets lost over the last interval */ packetLoss: number | null;
  remotePacketLoss: number | null;
  /** ms */ jitter: number | null;
  framesDecoded: number;
  framesPerSecond: number | null;
  audioPacketsReceived: number;
  quality: 'good' | 'fair' | 'poor' | 'unknown';
}

export declare class Peer extends Emitter<{
  state: [RTCPeerConnectionState]; track: [TrackEvent]; trackRemoved: [TrackEvent];
  media: [MediaState]; stats: [PeerStats]; closed: [];
}> {
  readonly identity: string;
  /** Current sid (null while the participant is reconnecting to the server). */
  sid: string | null;
  /**
   * The peer-to-peer connection: the mesh connection, or in SFU mode a data-only side
   * connection for files (`side`); null when there is none.
   */
  pc: RTCPeerConnection | null;
  /** True while `pc` only carries files (SFU mode); it becomes the mesh connection if the room goes back. */
  side: boolean;
  /** The path this participant's media arrives on now. */
  readonly via: MediaMode;
  /** Remote streams: 'camera' (audio + video) and 'screen'. */
  streams: Map<'camera' | 'screen', MediaStream>;
  media: MediaState;
  stats: PeerStats | null;
  polite: boolean;
  closed: boolean;
  /** Offers that crossed ours (glare), settled by perfect negotiation. */
  collisions: number;
  /** ICE restarts because ICE never started after a negotiation. */
  stuckRestarts: number;
  readonly connectionState: RTCPeerConnectionState;
}

export declare class Call extends Emitter<{
  peerJoined: [Peer]; peerLeft: [Peer]; peerState: [Peer, RTCPeerConnectionState];
  track: [TrackEvent]; trackRemoved: [TrackEvent]; peerMedia: [Peer];
  localTrack: [{ track: MediaStreamTrack; stream: MediaStream; source: TrackSource }];
  localTrackRemoved: [{ track: MediaStreamTrack; source: TrackSource }];
  data: [{ peer: Peer | null; identity: string; data: JSONValue | ArrayBuffer; lossy: boolean }];
  file: [FileTransfer]; stats: [Map<string, PeerStats>]; mediaError: [Error];
  /** The call switched paths (follows the room's `media_mode`). */
  mode: [MediaMode];
  /** SFU mode: loudest first, `level` in dBov. */
  activeSpeakers: [Array<{ peer: Peer | null; identity: string; level: number }>];
  closed: [];
}> {
  constructor(room: Room, opts?: CallOptions);
  readonly room: Room;
  /** By identity. */
  peers: Map<string, Peer>;
  localStream: MediaStream | null;
  screenStream: MediaStream | null;
  readonly microphoneEnabled: boolean;
  readonly cameraEnabled: boolean;
  readonly screenSharing: boolean;
  /** How media travels now. */
  readonly mode: MediaMode;
  /** The SFU connection in SFU mode (`pc`, `connectionState`, `tracks`), else null. */
  readonly sfu: { pc: RTCPeerConnection | null; connectionState: RTCPeerConnectionState | 'closed'; tracks: unknown[] } | null;
  closed: boolean;
  start(): Promise<Call>;
  setMicrophoneEnabled(on: boolean): Promise<void>;
  setCameraEnabled(on: boolean): Promise<void>;
  startScreenShare(constraints?: DisplayMediaStreamOptions): Promise<MediaStream>;
  stopScreenShare(): void;
  /**
   * Room data to everyone (or `to` one identity); `lossy`: unordered, no
   * retransmissions. Mesh: over each peer connection; SFU: relayed by the server,
   * which names the sender. Returns how many peers it was sent to.
   */
  sendData(data: JSONValue | ArrayBuffer | ArrayBufferView, opts?: { to?: string; lossy?: boolean }): number;
  /**
   * SFU mode: how wide the app shows `who`'s video; the server never sends a larger
   * simulcast layer than needed (null: no bound). Throws `bad_argument` for a width
   * that is not a positive number, `participant_not_found` for an unknown peer.
   */
  setVideoSize(who: string | Peer, width: number | null, opts?: { source?: 'camera' | 'screen' }): Promise<void>;
  /** SFU mode: pin a simulcast layer (`q`, `h`, `f`) or `auto`. */
  setVideoLayer(who: string | Peer, rid: string, opts?: { source?: 'camera' | 'screen' }): Promise<void>;
  /** SFU mode: stop or resume receiving `who`'s tracks (of one kind/source). */
  setSubscribed(who: string | Peer, enabled: boolean, opts?: { kind?: 'audio' | 'video'; source?: string }): Promise<void>;
  /** Show `who`'s stream in `video` and keep `setVideoSize` in step with its size; returns a stop function. */
  attach(video: HTMLVideoElement, who: string | Peer, opts?: { source?: 'camera' | 'screen' }): () => void;
  /**
   * A file to one participant, peer to peer in both modes (SFU mode: over a data-only
   * side connection). Throws `participant_not_found` (no such participant, or in mesh
   * mode no connection yet) or `bad_argument` (not a Blob); the transfer fails with
   * `transfer_failed` if its connection goes away.
   */
  sendFile(to: string | Participant, file: Blob, opts?: FileTransferOptions): FileTransfer;
  refreshStats(): Promise<Map<string, PeerStats>>;
  close(): void;
}

export interface FileTransferOptions {
  /** Name shown to the receiver (default `file.name`). */ name?: string;
  /** Bytes per data channel message (default 16384). */ chunkSize?: number;
  /** Pause above this bufferedAmount (default 1 MiB). */ highWaterMark?: number;
  /** Resume below this (bufferedAmountLowThreshold, default 256 KiB). */ lowWaterMark?: number;
  /** ms between progress events (default 100). */ progressInterval?: number;
}

export interface TransferProgress { bytes: number; total: number; fraction: number; bitrate: number }

export declare class FileTransfer extends Emitter<{
  progress: [TransferProgress];
  done: [{ sha256: string; blob?: Blob }];
  cancelled: [{ reason: string; byPeer: boolean }];
  error: [TandemError];
}> {
  readonly direction: 'send' | 'receive';
  readonly id: string;
  readonly name: string;
  readonly size: number;
  readonly type: string;
  readonly peer: Peer;
  state: 'pending' | 'active' | 'done' | 'cancelled' | 'failed';
  bytes: number;
  /** Outgoing: the most bytes ever queued in the channel (bounded by backpressure). */
  peakBuffered: number;
  readonly fraction: number;
  /** Hex SHA-256 of the whole file, once known. */
  sha256: string | null;
  /** Incoming: the file once verified. */
  blob: Blob | null;
  /** Settles like the events: resolves with `{sha256, blob?}`. */
  promise: Promise<{ sha256: string; blob?: Blob }>;
  cancel(reason?: string): void;
}

export declare function chunkRanges(size: number, chunk: number): Array<[number, number]>;
export declare function summarizeStats(report: Iterable<any>, prev?: any, now?: number): PeerStats & { _raw: any };
export declare function peerStats(pc: RTCPeerConnection, prev?: PeerStats | null): Promise<PeerStats & { _raw: any }>;
export declare const DEFAULT_BACKOFF: Readonly<Required<BackoffOptions>>;
export declare function backoffDelay(attempt: number, opts?: BackoffOptions, random?: () => number): number;

export declare class ChannelCursor {
  epoch: string | null;
  offset: number;
  since(): StreamPosition | undefined;
  classify(pub: { offset: number }): 'deliver' | 'duplicate' | 'gap';
  advance(pub: { offset: number }): void;
}

export declare class Sha256 {
  update(data: ArrayBuffer | ArrayBufferView): this;
  hex(): string;
}
export declare function sha256Hex(data: ArrayBuffer | ArrayBufferView): string;
