defmodule HyParView.PubSubProbe do
  @moduledoc false
  # Runs inside nodes booted by HyParView.Dev.LocalCluster (through
  # :peer.call): starts a Phoenix.PubSub with the HyParView.PubSub adapter
  # on the node's topology, records what one topic delivers, and broadcasts
  # paced streams while remembering when each message was sent.

  @pubsub HyParView.PubSubProbe.PubSub
  @topic "acceptance"

  @doc "Starts the PubSub and a recorder subscribed to the topic (owned by a holder process)."
  def start(topology) do
    caller = self()

    holder =
      :erlang.spawn(fn ->
        {:ok, _} = Application.ensure_all_started(:phoenix_pubsub)

        {:ok, _} =
          Supervisor.start_link(
            [
              {Phoenix.PubSub, name: @pubsub, adapter: HyParView.PubSub, topology: topology}
            ],
            strategy: :one_for_one
          )

        recorder = spawn_link(fn -> record_init() end)
        Process.register(recorder, __MODULE__.Recorder)
        send(caller, {:probe_started, self()})
        Process.sleep(:infinity)
      end)

    receive do
      {:probe_started, ^holder} -> :ok
    after
      10_000 -> {:error, :probe_start_timeout}
    end
  end

  @doc "Whether the adapter has subscribed to the HyParView server."
  def ready?(topology) do
    case Cluster.Strategy.HyParView.server(topology) do
      nil -> false
      # The strategy and the adapter.
      server -> HyParView.info(server).subscribers >= 2
    end
  end

  @doc "Messages the recorder got, in arrival order."
  def received do
    send(__MODULE__.Recorder, {:dump, self()})

    receive do
      {:dump, list} -> list
    after
      10_000 -> {:error, :timeout}
    end
  end

  @doc "The node's broadcast counters."
  def counters(topology) do
    HyParView.info(Cluster.Strategy.HyParView.server(topology)).counters
  end

  @doc """
  Broadcasts `{:m, origin, seq}` for `seqs`, `interval` ms apart, in a
  process of its own; `sent/0` then tells when each went out (os time, ms).
  """
  def stream(origin, seqs, interval) do
    caller = self()

    pid =
      :erlang.spawn(fn ->
        send(caller, {:streaming, self()})
        times = for seq <- seqs, do: send_one(origin, seq, interval)
        stream_done(times)
      end)

    receive do
      {:streaming, ^pid} ->
        name = :"#{__MODULE__}.Stream#{origin}"
        if Process.whereis(name), do: Process.unregister(name)
        Process.register(pid, name)
        :ok
    end
  end

  @doc "`{:done, [{seq, sent_at_ms}]}` once the stream of `origin` ended, else `:running`."
  def sent(origin) do
    pid = Process.whereis(:"#{__MODULE__}.Stream#{origin}")
    send(pid, {:sent, self()})

    receive do
      {:sent, reply} -> reply
    after
      10_000 -> {:error, :timeout}
    end
  end

  @doc """
  Broadcasts the warm-up probe `{:warm, origin}` now. The term is built here
  so that `:warm` is an atom of this module, loaded on every node: the
  adapter decodes with `:safe`, which drops a message naming an atom the
  receiving VM does not know (counted as `decode`).
  """
  def warm(origin), do: Phoenix.PubSub.broadcast(@pubsub, @topic, {:warm, origin})

  defp send_one(origin, seq, interval) do
    at = System.os_time(:millisecond)
    :ok = Phoenix.PubSub.broadcast(@pubsub, @topic, {:m, origin, seq})
    Process.sleep(interval)
    {seq, at}
  end

  defp stream_done(times) do
    receive do
      {:sent, to} ->
        send(to, {:sent, {:done, times}})
        stream_done(times)
    end
  end

  defp record_init do
    :ok = Phoenix.PubSub.subscribe(@pubsub, @topic)
    record([])
  end

  defp record(acc) do
    receive do
      {:dump, to} ->
        send(to, {:dump, Enum.reverse(acc)})
        record(acc)

      msg ->
        record([msg | acc])
    end
  end
end
