export default function Home() {
  return (
    <main className="flex min-h-screen items-center justify-center p-8">
      <div className="text-center">
        <h1 className="text-2xl font-semibold">Your app is on its way</h1>
        <p className="mt-2 text-muted-foreground">CodeFlux is writing it right now.</p>
      </div>
    </main>
  );
}
